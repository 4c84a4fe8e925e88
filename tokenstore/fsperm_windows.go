package tokenstore

import "io/fs"

// secureDir does nothing on Windows: a directory under %AppData% is private
// to the user through its ACL, which Go's file modes do not describe.
func secureDir(string, fs.FileInfo) error { return nil }

// secureFile does nothing on Windows; see secureDir.
func secureFile(string, fs.FileInfo) error { return nil }
