// Package depcheck holds no code: its test enforces the direction of imports
// between pkgcdn's packages (see DESIGN.md and STYLE.md), reading the real
// import graph with `go list`.
package depcheck
