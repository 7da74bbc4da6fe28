// Command gofloor is the benchmark's floor for a cold start: a Go program
// that imports only net/http and answers every request with 200 {} on
// :$PORT, over HTTP/1.1 and h2c as qci-appci does. The time from its exec
// to its first answer is what any Go server costs on the machine, measured
// in the same run as qci-appci's.
package main

import (
	"net/http"
	"os"
)

func main() {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	})}
	if err := srv.ListenAndServe(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
