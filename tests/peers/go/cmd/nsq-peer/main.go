// nsq-peer: a go-nsq v1.1.0 client that publishes and/or consumes numbered messages, for the
// interop tests in tests/tests/interop_clients.rs. tests/peers/python/peer.py (pynsq) and
// tests/peers/js/peer.js (nsqjs) take the same command line and print the same report.
//
//	nsq-peer pub|sub|both --topic T [--channel C] --count N
//	         (--nsqd-tcp HOST:PORT)... | (--lookupd-http HOST:PORT)...
//	         [--body-size B] [--batch K] [--max-in-flight K] [--timeout SECONDS]
//	         [--tls --tls-ca FILE [--tls-server-name NAME]] [--snappy] [--deflate] [--hold]
//
// pub sends N bodies "<index>|" padded with '.' to B bytes, in MPUB batches of K (K=1: PUB),
// waiting for each acknowledgement. It always publishes to the first --nsqd-tcp address.
// sub consumes until N distinct indexes were seen, FINishing every message. With --hold it then
// prints the report and keeps its connections (so a test can read the broker's per-client
// stats) until stdin reaches EOF. Exactly one JSON line goes to stdout; logs go to stderr.
// Exit status: 0 ok, 1 failure (timeout, publish error, ...), 2 bad usage.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nsqio/go-nsq"
)

type addrList []string

func (a *addrList) String() string     { return strings.Join(*a, ",") }
func (a *addrList) Set(v string) error { *a = append(*a, v); return nil }

type options struct {
	mode          string
	nsqdTCP       addrList
	lookupdHTTP   addrList
	topic         string
	channel       string
	count         int
	bodySize      int
	batch         int
	maxInFlight   int
	timeout       time.Duration
	tls           bool
	tlsCA         string
	tlsServerName string
	snappy        bool
	deflate       bool
	hold          bool
}

type report struct {
	Client     string  `json:"client"`
	Mode       string  `json:"mode"`
	Published  int     `json:"published"`
	Received   int     `json:"received"`
	Distinct   int     `json:"distinct"`
	Duplicates int     `json:"duplicates"`
	Seconds    float64 `json:"seconds"`
	Error      string  `json:"error,omitempty"`
}

var logger = log.New(os.Stderr, "[nsq-peer go-nsq] ", log.Lmicroseconds)

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		logger.Printf("usage error: %v", err)
		os.Exit(2)
	}
	rep := report{Client: "go-nsq", Mode: opts.mode}
	err = run(opts, &rep)
	if err != nil {
		rep.Error = err.Error()
		logger.Printf("FAILED: %v", err)
	}
	emit(&rep)
	if err != nil {
		os.Exit(1)
	}
}

var (
	started = time.Now()
	emitted bool
)

// emit prints the report line, once.
func emit(rep *report) {
	if emitted {
		return
	}
	emitted = true
	rep.Seconds = time.Since(started).Seconds()
	line, _ := json.Marshal(rep)
	fmt.Println(string(line))
}

func parseArgs(args []string) (*options, error) {
	if len(args) == 0 {
		return nil, errors.New("missing mode (pub, sub or both)")
	}
	o := &options{mode: args[0]}
	fs := flag.NewFlagSet("nsq-peer", flag.ContinueOnError)
	fs.Var(&o.nsqdTCP, "nsqd-tcp", "nsqd TCP address (repeatable)")
	fs.Var(&o.lookupdHTTP, "lookupd-http", "nsqlookupd HTTP address (repeatable)")
	fs.StringVar(&o.topic, "topic", "", "topic")
	fs.StringVar(&o.channel, "channel", "", "channel (sub)")
	fs.IntVar(&o.count, "count", 0, "number of messages")
	fs.IntVar(&o.bodySize, "body-size", 16, "body size in bytes (at least the index and '|')")
	fs.IntVar(&o.batch, "batch", 100, "messages per MPUB (1: PUB)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 200, "consumer max in flight")
	timeout := fs.Float64("timeout", 60, "seconds for the whole run")
	fs.BoolVar(&o.tls, "tls", false, "negotiate TLS")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM file of the CA that signed the broker's certificate")
	fs.StringVar(&o.tlsServerName, "tls-server-name", "", "name to verify the certificate against")
	fs.BoolVar(&o.snappy, "snappy", false, "negotiate snappy")
	fs.BoolVar(&o.deflate, "deflate", false, "negotiate deflate")
	fs.BoolVar(&o.hold, "hold", false, "sub: after the report, keep connections until stdin EOF")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	o.timeout = time.Duration(*timeout * float64(time.Second))
	switch {
	case o.mode != "pub" && o.mode != "sub" && o.mode != "both":
		return nil, fmt.Errorf("unknown mode %q", o.mode)
	case fs.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments %v", fs.Args())
	case o.topic == "" || o.count <= 0:
		return nil, errors.New("--topic and a positive --count are required")
	case o.mode != "sub" && len(o.nsqdTCP) == 0:
		return nil, errors.New("pub needs --nsqd-tcp")
	case o.mode != "pub" && (o.channel == "" || len(o.nsqdTCP)+len(o.lookupdHTTP) == 0):
		return nil, errors.New("sub needs --channel and --nsqd-tcp or --lookupd-http")
	case o.tls && o.tlsCA == "":
		return nil, errors.New("--tls needs --tls-ca")
	case o.batch <= 0:
		return nil, errors.New("--batch must be positive")
	}
	return o, nil
}

func config(o *options) (*nsq.Config, error) {
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = o.maxInFlight
	cfg.Snappy = o.snappy
	cfg.Deflate = o.deflate
	if o.tls {
		pem, err := os.ReadFile(o.tlsCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", o.tlsCA)
		}
		cfg.TlsV1 = true
		// go-nsq fills in ServerName from the address's host when it is empty.
		cfg.TlsConfig = &tls.Config{RootCAs: pool, ServerName: o.tlsServerName, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// body is the message with index i: its decimal index, '|', then '.' up to size bytes.
func body(i, size int) []byte {
	b := []byte(strconv.Itoa(i) + "|")
	for len(b) < size {
		b = append(b, '.')
	}
	return b
}

func indexOf(b []byte) (int, error) {
	s, _, ok := strings.Cut(string(b), "|")
	if !ok {
		return 0, fmt.Errorf("body %q has no '|'", b)
	}
	return strconv.Atoi(s)
}

func run(o *options, rep *report) error {
	cfg, err := config(o)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.timeout)
	if o.mode != "sub" {
		if err := publish(o, cfg, rep, deadline); err != nil {
			return err
		}
	}
	if o.mode != "pub" {
		return consume(o, cfg, rep, deadline)
	}
	return nil
}

func publish(o *options, cfg *nsq.Config, rep *report, deadline time.Time) error {
	p, err := nsq.NewProducer(o.nsqdTCP[0], cfg)
	if err != nil {
		return err
	}
	p.SetLogger(logger, nsq.LogLevelWarning)
	defer p.Stop()
	for i := 0; i < o.count; i += o.batch {
		if time.Now().After(deadline) {
			return fmt.Errorf("timeout after publishing %d of %d", rep.Published, o.count)
		}
		n := min(o.batch, o.count-i)
		if n == 1 {
			err = p.Publish(o.topic, body(i, o.bodySize))
		} else {
			bodies := make([][]byte, n)
			for j := range bodies {
				bodies[j] = body(i+j, o.bodySize)
			}
			err = p.MultiPublish(o.topic, bodies)
		}
		if err != nil {
			return fmt.Errorf("publish of messages %d..%d: %w", i, i+n-1, err)
		}
		rep.Published += n
	}
	logger.Printf("published %d to %s/%s", rep.Published, o.nsqdTCP[0], o.topic)
	return nil
}

func consume(o *options, cfg *nsq.Config, rep *report, deadline time.Time) error {
	c, err := nsq.NewConsumer(o.topic, o.channel, cfg)
	if err != nil {
		return err
	}
	c.SetLogger(logger, nsq.LogLevelWarning)
	var (
		mu   sync.Mutex
		seen = make(map[int]bool, o.count)
		done = make(chan struct{})
		bad  error
	)
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		i, err := indexOf(m.Body)
		mu.Lock()
		defer mu.Unlock()
		rep.Received++
		switch {
		case err != nil || i < 0 || i >= o.count:
			if bad == nil {
				bad = fmt.Errorf("unexpected body %q", m.Body)
			}
		case seen[i]:
			rep.Duplicates++
		default:
			seen[i] = true
			if len(seen) == o.count {
				close(done)
			}
		}
		return nil // FIN, whatever it was: a bad body is reported, not redelivered
	}))
	if len(o.lookupdHTTP) > 0 {
		err = c.ConnectToNSQLookupds(o.lookupdHTTP)
	} else {
		err = c.ConnectToNSQDs(o.nsqdTCP)
	}
	if err != nil {
		return err
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var result error
	select {
	case <-done:
	case <-timer.C:
		result = errors.New("timeout")
	}
	mu.Lock()
	rep.Distinct = len(seen)
	if result != nil {
		result = fmt.Errorf("timeout: %d distinct of %d after %d received", len(seen), o.count, rep.Received)
	} else if bad != nil {
		result = bad
	}
	mu.Unlock()
	if result == nil && o.hold {
		printHeld(rep)
	}
	c.Stop()
	<-c.StopChan
	return result
}

// printHeld prints the report early and waits for stdin to close, keeping the consumer
// connected meanwhile.
func printHeld(rep *report) {
	emit(rep)
	logger.Printf("holding connections until stdin closes")
	_, _ = io.Copy(io.Discard, os.Stdin)
}
