// Command chaos is baton's chaos suite: it runs a mixed load of chains and
// chords on real worker processes and a real redis-server (AOF, appendfsync
// always) while it SIGKILLs workers every couple of seconds, SIGTERMs one,
// and restarts Redis once; then it checks that every workflow succeeded with
// the right result, that no step ran again after its SUCCESS was recorded,
// that no chord body ran twice, and that every key baton wrote has a TTL.
//
//	go run ./internal/chaos          # full form: 500 chains, 100 chords, 3 min of faults
//	go run ./internal/chaos -short   # CI form: 60 chains, 12 chords, 60 s of faults
//	make chaos CHAOS_ARGS=-short
//
// The same binary is the worker: `chaos worker -redis ADDR -log DIR` runs a
// baton.Worker with the chaos tasks, which log every execution (task id,
// execution number, pid, the state the record was in) to DIR/exec-<pid>.log
// with one append-mode write per line, so a SIGKILL loses nothing.
//
// It exits 0 when every check passes, 1 on a violation, 2 on a setup error.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerMain(os.Args[2:]))
	}
	code, err := runMain(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
	}
	os.Exit(code)
}
