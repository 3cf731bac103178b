// nsq-bench-client: go-nsq v1.1.0 with its default configuration (nsq.NewConfig()) under the
// loads of benchmarks/src/bin/nsq-client-bench.rs, which runs it next to nsq-client and tokio-nsq,
// and of nsq-latency-bench and nsq-scale-bench.
// benchmarks/src/bin/nsq-producer-client.rs and tests/peers/rust/tokio-nsq-bench take the same
// command line and print the same report.
//
//	nsq-bench-client --nsqd HOST:PORT --topic T --mode awaited|pipelined|mpub|consume
//	                 --callers N --batch K --count M --size B [--window W] [--channel C]
//	nsq-bench-client --nsqd HOST:PORT --topic T --mode latency --rate R --count M --size B
//	                 --latencies FILE [--max-in-flight F] [--channel C] [--low-latency on|off]
//
// awaited:   N goroutines, each calls Publish (which waits for nsqd's answer) in a loop.
// pipelined: N goroutines, each keeps up to W PublishAsync calls outstanding; every call has
//
//	its own ProducerTransaction (its own answer) on the goroutine's done channel.
//
// mpub:      the same with MultiPublishAsync of K bodies: up to W MPUBs outstanding per goroutine.
// consume:   a Consumer on T/C with MaxInFlight 2500 FINishes (handler returns nil) until M
//
//	messages were handled. --nsqd may list several addresses, comma separated: the
//	Consumer connects to each (ConnectToNSQDs).
//
// latency:   a Producer publishing R messages a second (PublishAsync: every millisecond the
//
//	messages due by then) and a Consumer (MaxInFlight F, default 200) on T/C in the same
//	process. Each body starts with the message's number and the nanoseconds from the
//	program's start to its publish, big-endian uint64s. The first R messages (one second)
//	are not counted; the latency (arrival minus publish) of each of the next M is written to
//	FILE, one number of nanoseconds a line. --low-latency on sets OutputBufferSize and
//	OutputBufferTimeout to -1 (nsqd does not buffer the consumer's messages). The protocol
//	is nsq-benchmarks' latency module's.
//
// Messages are B bytes; M is the total over all goroutines (rounded up to whole batches).
// One JSON line goes to stdout: {"client","mode","messages","seconds","cpu_seconds"}, where
// cpu_seconds is this process's user+system time (getrusage) at the end. Logs go to stderr.
// Exit status: 0 ok, 1 failure, 2 bad usage.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nsqio/go-nsq"
)

type options struct {
	nsqd    string
	topic   string
	channel string
	mode    string
	callers int
	batch   int
	count   int
	size    int
	window  int
	// latency mode
	rate        int
	maxInFlight int
	lowLatency  string
	latencies   string
}

type report struct {
	Client     string  `json:"client"`
	Mode       string  `json:"mode"`
	Messages   int64   `json:"messages"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

var logger = log.New(os.Stderr, "[nsq-bench-client go-nsq] ", log.Lmicroseconds)

func main() {
	var o options
	fs := flag.NewFlagSet("nsq-bench-client", flag.ContinueOnError)
	fs.StringVar(&o.nsqd, "nsqd", "", "nsqd TCP address")
	fs.StringVar(&o.topic, "topic", "", "topic")
	fs.StringVar(&o.channel, "channel", "bench", "channel (consume)")
	fs.StringVar(&o.mode, "mode", "", "awaited|pipelined|mpub|consume")
	fs.IntVar(&o.callers, "callers", 1, "publishing goroutines")
	fs.IntVar(&o.batch, "batch", 1, "messages per MPUB")
	fs.IntVar(&o.count, "count", 0, "messages in total")
	fs.IntVar(&o.size, "size", 100, "message body bytes")
	fs.IntVar(&o.window, "window", 1000, "outstanding publishes per goroutine (pipelined, mpub)")
	fs.IntVar(&o.rate, "rate", 0, "messages a second (latency)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 200, "consumer MaxInFlight (latency)")
	fs.StringVar(&o.lowLatency, "low-latency", "off", "on: no output buffering in nsqd (latency)")
	fs.StringVar(&o.latencies, "latencies", "", "file for the latencies (latency)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if o.nsqd == "" || o.topic == "" || o.count <= 0 || o.callers <= 0 || o.batch <= 0 ||
		o.size <= 0 || o.window <= 0 {
		logger.Printf("usage error: --nsqd, --topic and a positive --count are needed")
		os.Exit(2)
	}
	start := time.Now()
	var messages int64
	var err error
	switch o.mode {
	case "awaited", "pipelined", "mpub":
		messages, err = publish(o)
	case "consume":
		messages, err = consume(o)
	case "latency":
		if o.rate <= 0 || o.latencies == "" || o.size < 16 ||
			(o.lowLatency != "on" && o.lowLatency != "off") {
			logger.Printf("usage error: --mode latency needs --rate, --latencies and --size >= 16")
			os.Exit(2)
		}
		messages, err = latency(o, start)
	default:
		logger.Printf("usage error: unknown --mode %q", o.mode)
		os.Exit(2)
	}
	seconds := time.Since(start).Seconds()
	if err != nil {
		logger.Printf("failed: %v", err)
		os.Exit(1)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		logger.Printf("getrusage: %v", err)
		os.Exit(1)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	out, _ := json.Marshal(report{"go-nsq", o.mode, messages, seconds, cpu})
	fmt.Println(string(out))
}

// share splits total units between n workers, the first ones taking the remainder.
func share(total, n, i int) int {
	s := total / n
	if i < total%n {
		s++
	}
	return s
}

func publish(o options) (int64, error) {
	cfg := nsq.NewConfig()
	p, err := nsq.NewProducer(o.nsqd, cfg)
	if err != nil {
		return 0, err
	}
	p.SetLogger(logger, nsq.LogLevelWarning)
	defer p.Stop()
	// The clock runs from before the first connection, as in the other clients.
	body := make([]byte, o.size)
	for i := range body {
		body[i] = 'x'
	}
	per := 1
	if o.mode == "mpub" {
		per = o.batch
	}
	units := (o.count + per - 1) / per
	var done int64
	var wg sync.WaitGroup
	errs := make(chan error, o.callers)
	for c := 0; c < o.callers; c++ {
		n := share(units, o.callers, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch o.mode {
			case "awaited":
				for i := 0; i < n && err == nil; i++ {
					err = p.Publish(o.topic, body)
				}
			case "pipelined", "mpub":
				err = pipelined(p, o, n)
			}
			if err != nil {
				errs <- err
				return
			}
			atomic.AddInt64(&done, int64(n*per))
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return done, nil
}

// pipelined makes n PublishAsync calls (MultiPublishAsync of o.batch bodies in mode mpub),
// keeping up to o.window outstanding, and checks each one's answer.
func pipelined(p *nsq.Producer, o options, n int) error {
	body := make([]byte, o.size)
	for i := range body {
		body[i] = 'x'
	}
	bodies := make([][]byte, o.batch)
	for i := range bodies {
		bodies[i] = body
	}
	doneChan := make(chan *nsq.ProducerTransaction, o.window)
	outstanding := 0
	for i := 0; i < n; i++ {
		if outstanding == o.window {
			if t := <-doneChan; t.Error != nil {
				return t.Error
			}
			outstanding--
		}
		var err error
		if o.mode == "mpub" {
			err = p.MultiPublishAsync(o.topic, bodies, doneChan)
		} else {
			err = p.PublishAsync(o.topic, body, doneChan)
		}
		if err != nil {
			return err
		}
		outstanding++
	}
	for ; outstanding > 0; outstanding-- {
		if t := <-doneChan; t.Error != nil {
			return t.Error
		}
	}
	return nil
}

type handler struct {
	seen   int64
	target int64
	done   chan struct{}
	once   sync.Once
}

func (h *handler) HandleMessage(m *nsq.Message) error {
	if atomic.AddInt64(&h.seen, 1) == h.target {
		h.once.Do(func() { close(h.done) })
	}
	return nil // FIN
}

func consume(o options) (int64, error) {
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 2500
	c, err := nsq.NewConsumer(o.topic, o.channel, cfg)
	if err != nil {
		return 0, err
	}
	c.SetLogger(logger, nsq.LogLevelWarning)
	h := &handler{target: int64(o.count), done: make(chan struct{})}
	c.AddHandler(h)
	if err := c.ConnectToNSQDs(strings.Split(o.nsqd, ",")); err != nil {
		return 0, err
	}
	select {
	case <-h.done:
	case <-time.After(10 * time.Minute):
		return 0, errors.New("timed out before every message was consumed")
	}
	c.Stop()
	<-c.StopChan
	return atomic.LoadInt64(&h.seen), nil
}

// probe measures each counted message's latency and finishes every message.
type probe struct {
	start         time.Time
	warmup, total uint64
	want          int
	mu            sync.Mutex
	nanos         []uint64
	done          chan struct{}
	once          sync.Once
}

func (p *probe) HandleMessage(m *nsq.Message) error {
	arrived := uint64(time.Since(p.start).Nanoseconds())
	if len(m.Body) < 16 {
		return nil
	}
	number := binary.BigEndian.Uint64(m.Body[:8])
	sent := binary.BigEndian.Uint64(m.Body[8:16])
	if number < p.warmup || number >= p.total {
		return nil
	}
	lat := uint64(0)
	if arrived > sent {
		lat = arrived - sent
	}
	p.mu.Lock()
	p.nanos = append(p.nanos, lat)
	n := len(p.nanos)
	p.mu.Unlock()
	if n == p.want {
		p.once.Do(func() { close(p.done) })
	}
	return nil // FIN
}

func latency(o options, start time.Time) (int64, error) {
	ccfg := nsq.NewConfig()
	ccfg.MaxInFlight = o.maxInFlight
	if o.lowLatency == "on" {
		ccfg.OutputBufferSize = -1
		ccfg.OutputBufferTimeout = -1
	}
	c, err := nsq.NewConsumer(o.topic, o.channel, ccfg)
	if err != nil {
		return 0, err
	}
	c.SetLogger(logger, nsq.LogLevelWarning)
	warmup, total := uint64(o.rate), uint64(o.rate+o.count)
	h := &probe{start: start, warmup: warmup, total: total, want: o.count,
		nanos: make([]uint64, 0, o.count), done: make(chan struct{})}
	c.AddHandler(h)
	if err := c.ConnectToNSQD(o.nsqd); err != nil {
		return 0, err
	}
	p, err := nsq.NewProducer(o.nsqd, nsq.NewConfig())
	if err != nil {
		return 0, err
	}
	p.SetLogger(logger, nsq.LogLevelWarning)
	answers := make(chan *nsq.ProducerTransaction, 4096)
	failed := make(chan error, 1)
	answered := make(chan struct{})
	go func() {
		n := uint64(0)
		for t := range answers {
			if t.Error != nil {
				select {
				case failed <- t.Error:
				default:
				}
			}
			if n++; n == total {
				close(answered)
			}
		}
	}()
	go func() {
		began := time.Now()
		for next := uint64(0); next < total; {
			due := uint64(time.Since(began).Seconds() * float64(o.rate))
			if due > total {
				due = total
			}
			for ; next < due; next++ {
				body := make([]byte, o.size)
				for i := 16; i < o.size; i++ {
					body[i] = 'x'
				}
				binary.BigEndian.PutUint64(body[:8], next)
				binary.BigEndian.PutUint64(body[8:16], uint64(time.Since(start).Nanoseconds()))
				if err := p.PublishAsync(o.topic, body, answers); err != nil {
					select {
					case failed <- err:
					default:
					}
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	patience := 10*time.Second + time.Duration(float64(total)/float64(o.rate)*float64(time.Second))
	select {
	case <-h.done:
	case err := <-failed:
		return 0, err
	case <-time.After(patience):
		return 0, errors.New("timed out before every counted message arrived")
	}
	select {
	case <-answered:
	case err := <-failed:
		return 0, err
	case <-time.After(patience):
		return 0, errors.New("timed out before every publish was answered")
	}
	c.Stop()
	<-c.StopChan
	p.Stop()
	select {
	case err := <-failed:
		return 0, err
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f, err := os.Create(o.latencies)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	for _, n := range h.nanos {
		fmt.Fprintln(w, n)
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return int64(len(h.nanos)), nil
}
