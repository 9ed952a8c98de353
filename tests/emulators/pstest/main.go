// Command pstest-server serves Google's in-memory Pub/Sub fake
// (cloud.google.com/go/pubsub/v2/pstest) over gRPC for the fileops-daemon tests.
//
// Clients reach it with PUBSUB_EMULATOR_HOST=127.0.0.1:PORT. Once the listener is
// bound it prints exactly one line, "listening on HOST:PORT", to stdout; it exits 0
// on SIGTERM or SIGINT. All state is in memory and is lost on exit.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "TCP port to listen on (0 = pick a free one)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("pstest-server: ")

	if *port < 0 || *port > 65535 {
		log.Fatalf("invalid -port %d", *port)
	}

	// Catch signals before announcing readiness so a fast stop never kills us uncleanly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	srv := pstest.NewServerWithAddress(net.JoinHostPort(*host, strconv.Itoa(*port)))
	fmt.Printf("listening on %s\n", srv.Addr)
	_ = os.Stdout.Sync()

	sig := <-sigs
	log.Printf("received %s, shutting down", sig)
	if err := srv.Close(); err != nil {
		log.Printf("close: %v", err)
		os.Exit(1)
	}
}
