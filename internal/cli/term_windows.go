package cli

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// enableVT turns on virtual-terminal processing for the console behind f,
// so that it interprets the escape sequences the live view writes (Windows
// Terminal has it on already; conhost needs asking). restore puts the
// console's previous mode back: the console outlives kpf and belongs to the
// shell. It fails if f is not a console or the console is too old for the
// mode (before Windows 10 1511).
func enableVT(f *os.File) (restore func(), err error) {
	h := windows.Handle(f.Fd())
	var mode uint32
	if err := windows.GetConsoleMode(h, &mode); err != nil {
		return nil, fmt.Errorf("get console mode: %w", err)
	}
	if mode&windows.ENABLE_VIRTUAL_TERMINAL_PROCESSING != 0 {
		return func() {}, nil
	}
	if err := windows.SetConsoleMode(h, mode|windows.ENABLE_VIRTUAL_TERMINAL_PROCESSING); err != nil {
		return nil, fmt.Errorf("enable virtual-terminal processing: %w", err)
	}
	return func() { windows.SetConsoleMode(h, mode) }, nil
}
