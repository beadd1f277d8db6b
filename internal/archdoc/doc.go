// Package archdoc holds the test that keeps docs/architecture.md's
// dependency list true to the code.
package archdoc
