//go:build !unix

package publish

import "errors"

func killChild(at int) error { return errors.New("kill tests need unix") }
