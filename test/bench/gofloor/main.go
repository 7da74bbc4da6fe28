// Command gofloor is the benchmark's floor for a cold start: a Go program
// that imports only net/http and answers every request with 200 {} on
// :$PORT. The time from its exec to its first answer is what any Go server
// costs on the machine, measured in the same run as qci-appci's.
package main

import (
	"net/http"
	"os"
)

func main() {
	err := http.ListenAndServe(":"+os.Getenv("PORT"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
