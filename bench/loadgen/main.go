// loadgen: an open-loop HTTP/1.1 load generator for bench/decide.py.
//
// Requests are due at a fixed rate whatever the server does, and each latency counts from the
// request's due time, not from when a connection was free to send it: a slow server cannot slow
// the generator down and hide its own queueing (no coordinated omission). Keep-alive connections
// carry one request at a time, as browsers do.
//
// It replaces a generator written in Python, which needed most of a core at 5,000 requests/s and
// starved the Redis beside it. Output: one JSON object on stdout.
//
//	loadgen -addr 127.0.0.1:8080 -rate 5000 -seconds 10 -connections 64 < requests.txt
//
// stdin holds one request target per line (e.g. /v1/decide?slot=hero&user=u1), used round robin.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type job struct {
	request []byte
	due     time.Time
}

type result struct {
	latency time.Duration
	ok      bool
}

type summary struct {
	Offered     float64   `json:"offered"`
	Achieved    float64   `json:"achieved"`
	Sent        int       `json:"sent"`
	Errors      int       `json:"errors"`
	P50         float64   `json:"p50_ms"`
	P99         float64   `json:"p99_ms"`
	P999        float64   `json:"p999_ms"`
	Max         float64   `json:"max_ms"`
	DispatchP99 float64   `json:"dispatch_lag_p99_ms"`
	LatenciesMs []float64 `json:"latencies_ms,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server host:port")
	rate := flag.Float64("rate", 1000, "requests per second")
	seconds := flag.Float64("seconds", 10, "how long to send")
	connections := flag.Int("connections", 64, "keep-alive connections")
	all := flag.Bool("all", false, "also print every latency (ms)")
	flag.Parse()

	requests, err := readRequests(os.Stdin, *addr)
	if err != nil || len(requests) == 0 {
		fail("loadgen: give request targets on stdin, one per line (%v)", err)
	}
	conns := make([]net.Conn, *connections)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", *addr); err != nil {
			fail("loadgen: cannot connect to %s: %v", *addr, err)
		}
	}
	total := int(*rate * *seconds)
	jobs := make(chan job, total)
	results := make(chan result, total)
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Add(1)
		go func(conn net.Conn) {
			defer wg.Done()
			serve(conn, jobs, results)
		}(conn)
	}

	began := time.Now()
	lags := dispatch(jobs, requests, *rate, total)
	close(jobs)
	wg.Wait()
	elapsed := time.Since(began)
	close(results)
	report(results, lags, *rate, total, elapsed, *all)
}

// dispatch puts every request on the queue at its due time; how late each was put there.
func dispatch(jobs chan<- job, requests [][]byte, rate float64, total int) []time.Duration {
	start := time.Now().Add(20 * time.Millisecond)
	interval := time.Duration(float64(time.Second) / rate)
	lags := make([]time.Duration, 0, total)
	for sent := 0; sent < total; {
		now := time.Now()
		due := int(now.Sub(start)/interval) + 1
		if due > total {
			due = total
		}
		for ; sent < due; sent++ {
			at := start.Add(time.Duration(sent) * interval)
			lags = append(lags, now.Sub(at))
			jobs <- job{requests[sent%len(requests)], at}
		}
		time.Sleep(100 * time.Microsecond)
	}
	return lags
}

// serve sends the connection's requests one at a time and times each from its due time.
func serve(conn net.Conn, jobs <-chan job, results chan<- result) {
	reader := bufio.NewReaderSize(conn, 64*1024)
	for j := range jobs {
		if _, err := conn.Write(j.request); err != nil {
			results <- result{time.Since(j.due), false}
			continue
		}
		status, err := readResponse(reader)
		results <- result{time.Since(j.due), err == nil && status == 200}
	}
	conn.Close()
}

// readResponse reads one response with a Content-Length body; its status.
func readResponse(reader *bufio.Reader) (int, error) {
	line, err := reader.ReadString('\n')
	if err != nil || len(line) < 12 {
		return 0, fmt.Errorf("status line: %v", err)
	}
	status, _ := strconv.Atoi(line[9:12])
	length := 0
	for {
		header, err := reader.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if header == "\r\n" {
			break
		}
		name, value, found := strings.Cut(header, ":")
		if found && strings.EqualFold(name, "content-length") {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	_, err = io.CopyN(io.Discard, reader, int64(length))
	return status, err
}

func readRequests(input io.Reader, addr string) ([][]byte, error) {
	var requests [][]byte
	scanner := bufio.NewScanner(input)
	for scanner.Scan() {
		target := strings.TrimSpace(scanner.Text())
		if target != "" {
			requests = append(requests, []byte("GET "+target+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"))
		}
	}
	return requests, scanner.Err()
}

func report(results <-chan result, lags []time.Duration, rate float64, total int, elapsed time.Duration, all bool) {
	latencies := make([]float64, 0, total)
	errors := 0
	for r := range results {
		latencies = append(latencies, float64(r.latency)/float64(time.Millisecond))
		if !r.ok {
			errors++
		}
	}
	sort.Float64s(latencies)
	lagMs := make([]float64, len(lags))
	for i, lag := range lags {
		lagMs[i] = float64(lag) / float64(time.Millisecond)
	}
	sort.Float64s(lagMs)
	out := summary{
		Offered:     rate,
		Achieved:    float64(len(latencies)) / elapsed.Seconds(),
		Sent:        total,
		Errors:      errors,
		P50:         percentile(latencies, 0.5),
		P99:         percentile(latencies, 0.99),
		P999:        percentile(latencies, 0.999),
		Max:         latencies[len(latencies)-1],
		DispatchP99: percentile(lagMs, 0.99),
	}
	if all {
		out.LatenciesMs = latencies
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("loadgen: %v", err)
	}
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}
