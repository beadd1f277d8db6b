package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is wrapped by Find's error when no forwards.yaml exists in
// the directory or any parent.
var ErrNotFound = errors.New("no " + FileName + " found")

// Find looks for forwards.yaml in dir and then in each parent directory, the
// way git finds .git, and returns the first it finds. A relative dir gives a
// relative result ("forwards.yaml", "../forwards.yaml"), so messages show
// paths the user recognizes.
func Find(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", FileName, err)
	}
	for up := 0; ; up++ {
		fi, err := os.Stat(filepath.Join(abs, FileName))
		if err == nil && fi.Mode().IsRegular() {
			if filepath.IsAbs(dir) {
				return filepath.Join(abs, FileName), nil
			}
			return filepath.Join(dir, strings.Repeat("../", up), FileName), nil
		}
		next := filepath.Dir(abs)
		if next == abs {
			return "", fmt.Errorf("%w in %s or any parent directory", ErrNotFound, dir)
		}
		abs = next
	}
}
