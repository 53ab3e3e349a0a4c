// Command hello is the real node's test workload: a small HTTP server whose answers say which
// pod served them, so a test can tell a Service routed to a real container.
//
//	GET /        -> {"pod": "<hostname>", "client": "<remote address>"}
//	GET /healthz -> 200 "ok" (the readiness probe's path)
//
// It listens on $PORT (default 8080) on every address of the pod and exits on SIGTERM. With
// $HELLO_WRITE set it first appends its hostname to that file and exits 1 if it cannot (a test
// of a volume's permissions).
//
// `hello fetch URL` is its client, for tests that need a request made from inside a pod (to a
// Service, another pod, or the host's address): it prints the status and body of one GET and
// exits 0 when the status is below 500. HTTPS certificates are not checked (a reachability
// probe, not a client to trust). `hello say HOST:PORT TEXT` sends one line over TCP and prints
// the first line of the answer (e.g. PING to Redis).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "fetch" {
		os.Exit(fetch(os.Args[2]))
	}
	if len(os.Args) == 4 && os.Args[1] == "say" {
		os.Exit(say(os.Args[2], os.Args[3]))
	}
	serve()
}

func say(address, text string) int {
	connection, err := net.DialTimeout("tcp", address, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer connection.Close()
	_ = connection.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(connection, "%s\r\n", text); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	line, err := bufio.NewReader(connection).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Print(line)
	return 0
}

func fetch(url string) int {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	response, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(response.Body, 64<<10))
	fmt.Printf("%d\n%s", response.StatusCode, body)
	if response.StatusCode >= 500 {
		return 1
	}
	return 0
}

func serve() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	hostname, _ := os.Hostname()
	if path := os.Getenv("HELLO_WRITE"); path != "" {
		file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(file, hostname)
			err = errors.Join(err, file.Close())
		}
		if err != nil {
			log.Fatalf("hello: writing %s: %v", path, err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"pod": hostname, "client": r.RemoteAddr})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	log.Printf("hello: %s listening on :%s", hostname, port)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
