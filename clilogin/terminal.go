package clilogin

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/term"
)

// TerminalMode says whether Login animates its progress on Config.Stdout.
type TerminalMode int

const (
	// TerminalAuto animates when Stdout is an *os.File connected to a
	// terminal (golang.org/x/term.IsTerminal) and $TERM is not "dumb";
	// otherwise Login prints plain lines.
	TerminalAuto TerminalMode = iota
	// TerminalInteractive always shows the spinner, with carriage returns
	// and ANSI line clearing ("\r\x1b[2K").
	TerminalInteractive
	// TerminalPlain never animates: plain, newline-terminated lines only,
	// with no control characters (for logs and CI).
	TerminalPlain
)

// spinFrames are the spinner's frames; spinInterval is the redraw period.
var spinFrames = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

const spinInterval = 100 * time.Millisecond

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\x1b[2K"

// isTerminal reports whether w is an *os.File connected to a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// animates decides whether progress on w is animated.
func animates(mode TerminalMode, w io.Writer) bool {
	switch mode {
	case TerminalInteractive:
		return true
	case TerminalPlain:
		return false
	}
	return isTerminal(w) && os.Getenv("TERM") != "dumb"
}

// headless reports whether no local browser can be expected: an SSH session
// (SSH_CONNECTION or SSH_TTY set), or Linux/BSD without a display (neither
// DISPLAY nor WAYLAND_DISPLAY set).
func headless(getenv func(string) string, goos string) bool {
	if getenv("SSH_CONNECTION") != "" || getenv("SSH_TTY") != "" {
		return true
	}
	switch goos {
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly", "illumos", "solaris":
		return getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == ""
	}
	return false
}

// autoHeadless is headless for this process.
func autoHeadless() bool { return headless(os.Getenv, runtime.GOOS) }

// screen serialises what Login writes to the user: plain lines, an open
// prompt, and (when animated) one spinner line that is redrawn in place and
// erased before anything else is written.
type screen struct {
	mu      sync.Mutex
	w       io.Writer
	animate bool
	now     func() time.Time

	spinMsg   string
	spinStart time.Time
	frame     int
	drawn     bool // a spinner frame is on the current line
	stopSpin  chan struct{}
	spinDone  chan struct{}
	prompting bool // a prompt without a newline is on the current line
}

func newScreen(w io.Writer, animate bool, now func() time.Time) *screen {
	return &screen{w: w, animate: animate, now: now}
}

// printf writes a message on lines of its own: it erases the spinner line
// and ends an open prompt first. The spinner redraws on its next tick.
func (s *screen) printf(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eraseLocked()
	fmt.Fprintf(s.w, format, a...)
}

// prompt writes p and leaves the cursor after it.
func (s *screen) prompt(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eraseLocked()
	io.WriteString(s.w, p)
	s.prompting = true
}

// answered records that the open prompt's line was ended by the terminal's
// echo of the user's Enter key.
func (s *screen) answered() {
	s.mu.Lock()
	s.prompting = false
	s.mu.Unlock()
}

func (s *screen) eraseLocked() {
	if s.drawn {
		io.WriteString(s.w, clearLine)
		s.drawn = false
	}
	if s.prompting {
		io.WriteString(s.w, "\n")
		s.prompting = false
	}
}

// spin shows msg with a spinner and the elapsed time when animated, else
// prints msg once as a plain line.
func (s *screen) spin(msg string) {
	if !s.animate {
		s.printf("%s\n", msg)
		return
	}
	s.mu.Lock()
	s.spinMsg, s.spinStart = msg, s.now()
	s.stopSpin, s.spinDone = make(chan struct{}), make(chan struct{})
	s.drawLocked()
	stop, done := s.stopSpin, s.spinDone
	s.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTicker(spinInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.mu.Lock()
				s.drawLocked()
				s.mu.Unlock()
			}
		}
	}()
}

func (s *screen) drawLocked() {
	if s.prompting {
		return
	}
	elapsed := s.now().Sub(s.spinStart).Truncate(time.Second)
	fmt.Fprintf(s.w, "%s%c %s %s", clearLine, spinFrames[s.frame%len(spinFrames)], s.spinMsg, elapsed)
	s.frame++
	s.drawn = true
}

// close stops the spinner and erases its line, and ends an open prompt. It
// may be called more than once.
func (s *screen) close() {
	s.mu.Lock()
	stop, done := s.stopSpin, s.spinDone
	s.stopSpin = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	s.mu.Lock()
	s.eraseLocked()
	s.mu.Unlock()
}
