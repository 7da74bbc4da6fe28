package kubecluster

import "runtime"

// callerFile locates this source file, to find the repository's .cache.
func callerFile() (uintptr, string, int, bool) { return runtime.Caller(0) }
