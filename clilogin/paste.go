package clilogin

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// ErrInvalidPaste means every chance to paste the callback URL in paste mode
// was used on text that is not a callback URL of this login.
var ErrInvalidPaste = errors.New("clilogin: pasted text is not the sign-in's callback URL")

// maxPasteTries bounds how many wrong pastes a login accepts before it ends.
const maxPasteTries = 5

// maxPasteLine bounds one pasted line.
const maxPasteLine = 64 << 10

// pasteInput returns where paste mode reads from, and whether the terminal
// echoes what is typed there: Config.Stdin, else os.Stdin when it is a
// terminal or a pipe; nil when there is nothing to read.
func (c *Client) pasteInput() (r io.Reader, echoes bool) {
	if c.cfg.Stdin != nil {
		return c.cfg.Stdin, isTerminal(c.cfg.Stdin)
	}
	fi, err := os.Stdin.Stat()
	switch {
	case err != nil:
		return nil, false
	case isTerminal(os.Stdin):
		return os.Stdin, true
	case fi.Mode()&os.ModeNamedPipe != 0:
		return os.Stdin, false
	}
	return nil, false
}

// tooLong stands for a line longer than maxPasteLine; it is not a URL, so it
// costs a try with "That is not a URL".
const tooLong = "\x00"

// readLines sends r's lines, trimmed, on the returned channel until r ends
// (the channel is then closed) or done is closed. A line longer than
// maxPasteLine is read to its end and sent as tooLong. A goroutine blocked in
// r's Read stays blocked until r returns; it then sees done and exits without
// sending.
func readLines(r io.Reader, done <-chan struct{}) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		br := bufio.NewReaderSize(r, 4096)
		for {
			line, err := readLine(br)
			if err != nil && line == "" {
				return
			}
			select {
			case ch <- line:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// readLine reads one line, trimmed; tooLong when it exceeds maxPasteLine. The
// error is io.EOF (or the reader's) when r ended; line is then the last,
// unterminated line, or "" when there was none.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	over := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !over && len(b)+len(chunk) <= maxPasteLine+1 { // +1: the '\n'
			b = append(b, chunk...)
		} else {
			over, b = true, nil
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil && !over && len(b) == 0:
			return "", err
		case over:
			return tooLong, err
		}
		return strings.TrimSpace(string(b)), err
	}
}

// pasteProblem is a pasted line that is not this login's callback: what to
// tell the user, and the error to end with when no chance is left.
type pasteProblem struct {
	msg string
	err error // ErrStateMismatch or ErrInvalidPaste
}

// judgePaste validates a pasted callback like the loopback handler
// validates a request (state, then flow.judge for iss and error=), and
// returns the callback that ends the login, or the problem. It accepts
// every form a browser shows that carries this login's state: the
// http://127.0.0.1:PORT/callback?… URL, the same with https (browsers that
// upgrade loopback URLs), with host localhost or [::1], and the bare query
// (?code=…&state=… or code=…&state=…). The state, 256 random bits, is what
// ties a paste to this login, as it does a loopback request. The messages
// never contain the pasted text.
func (f *flow) judgePaste(line string) (*callback, *pasteProblem) {
	line = strings.Trim(line, " \t\"'<>")
	want := "http://" + f.host + f.path + "?…"
	notURL := &pasteProblem{err: ErrInvalidPaste,
		msg: "That is not a URL. Copy the whole address from the browser's address bar; it starts with " + want}
	raw, ok := pastedQuery(line)
	if !ok {
		return nil, notURL
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, &pasteProblem{err: ErrInvalidPaste,
			msg: "That URL is garbled; copy the whole address again."}
	}
	states := q["state"]
	responded := q.Has("code") || q.Has("error")
	switch {
	case !responded && (q.Has("response_type") || q.Has("code_challenge") || q.Has("redirect_uri")):
		return nil, &pasteProblem{err: ErrInvalidPaste,
			msg: "That is the sign-in URL itself. Open it in a browser, sign in, then paste the address the browser ends on (" + want + ")."}
	case len(states) == 0 && responded:
		return nil, &pasteProblem{err: ErrStateMismatch,
			msg: "That URL looks cut off (it has no state). Copy the whole address, to its very end, and paste it again."}
	case len(states) == 0:
		return nil, &pasteProblem{err: ErrInvalidPaste,
			msg: "That URL has no sign-in response in it. Finish signing in, then paste the address the browser ends on."}
	case len(states) == 1 && len(states[0]) < len(f.state) && strings.HasPrefix(f.state, states[0]):
		return nil, &pasteProblem{err: ErrStateMismatch,
			msg: "That URL looks cut off (its state is incomplete). Copy the whole address, to its very end, and paste it again."}
	case len(states) != 1 || subtle.ConstantTimeCompare([]byte(states[0]), []byte(f.state)) != 1:
		return nil, &pasteProblem{err: ErrStateMismatch,
			msg: "That URL belongs to another login (its state does not match). Paste the address from the sign-in you opened with the URL above."}
	case !responded:
		return nil, &pasteProblem{err: ErrInvalidPaste,
			msg: "That URL has no sign-in response in it. Finish signing in, then paste the address the browser ends on."}
	}
	cb, _, _ := f.judge(q) // the state matches, so judge returns a callback
	return cb, nil
}

// pastedQuery finds the query in a pasted line: an http or https URL's
// query, the text after "?" in a bare "?code=…&state=…" or a URL without
// a scheme, or a bare "code=…&state=…". ok is false for anything else.
func pastedQuery(line string) (string, bool) {
	if line == "" {
		return "", false
	}
	if u, err := url.Parse(line); err == nil && u.Scheme != "" && u.Host != "" {
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", false
		}
		return u.RawQuery, true
	}
	if _, query, found := strings.Cut(line, "?"); found {
		return query, true
	}
	for _, k := range []string{"code=", "state=", "error="} {
		if strings.HasPrefix(line, k) || strings.Contains(line, "&"+k) {
			return line, true
		}
	}
	return "", false
}

// pasteRetryable reports whether a pasted callback that failed in the token
// exchange may be pasted again: the server refused the code itself
// (invalid_grant), as it does for a code cut off while copying.
func pasteRetryable(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Code == "invalid_grant"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
