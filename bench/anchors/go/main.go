// Command bench is the Go anchor for sluice's pattern benchmarks
// (bench/patterns, run both with `scripts/bench patterns`).
//
// It runs the same workloads (W1-W7) as bench/patterns/bench_*.cpp, written the
// way a Go programmer would write them: channels, goroutines, sync.WaitGroup,
// and the sender closes. Each workload runs -reps times; the median rate is
// printed as one machine-readable line:
//
//	W1 spsc go 12345678        (items per second)
//
// Lines starting with '#' are comments. W5 prints the serial rate, the pool
// rate and the pool's efficiency = pool / (workers × serial).
//
// Only the standard library is used. GOMAXPROCS is left at its default.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Workload sizes: keep in step with bench/patterns/workloads.hpp.
const (
	w1Items    = 10_000_000
	w1Capacity = 1024
	w2Items    = 10_000_000 // total over both producers
	w2Capacity = 1024
	w2Workers  = 2 // producers and consumers
	w3Items    = 1_000_000
	w4Items    = 5_000_000
	w4Capacity = 256
	w4Workers  = 2 // per map stage
	w5Jobs     = 200_000
	w5Workers  = 2
	w5Queue    = 1024
	w6Workers  = 10_000
	w6Capacity = 1024
	w6Latency  = 20 * time.Millisecond
	w6JobsDef  = 400_000
	w7Items    = 4_000_000
	w7Capacity = 64
	w7Inputs   = 4
	// defaultJobIters is the xorshift step count giving ≈2 µs per job on the
	// reference machine (AMD EPYC, 2 vCPU); kJobItersDefault in workloads.hpp.
	defaultJobIters = 1230
)

// job is the W5 unit of work: iters xorshift64 steps seeded from the job
// index. bench/patterns/workloads.hpp has the identical function.
func job(i uint64, iters int) uint64 {
	x := i*0x9E3779B97F4A7C15 + 1
	for k := 0; k < iters; k++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// jobCheck fingerprints job() so the driver can confirm both languages did
// the same work: xor of job(0..15).
func jobCheck(iters int) uint64 {
	var c uint64
	for i := uint64(0); i < 16; i++ {
		c ^= job(i, iters)
	}
	return c
}

// W1: one producer, one consumer, buffered channel.
func spsc(n int64, capacity int) int64 {
	ch := make(chan int64, capacity)
	go func() {
		for i := int64(0); i < n; i++ {
			ch <- i
		}
		close(ch)
	}()
	var sum int64
	for v := range ch {
		sum += v
	}
	return sum
}

// W2: producers and consumers share one buffered channel. Producer p sends
// the p-th contiguous slice of 0..n-1; the last producer to finish closes.
func mpmc(n int64, capacity, producers, consumers int) int64 {
	ch := make(chan int64, capacity)
	var pwg sync.WaitGroup
	for p := 0; p < producers; p++ {
		lo := n * int64(p) / int64(producers)
		hi := n * int64(p+1) / int64(producers)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := lo; i < hi; i++ {
				ch <- i
			}
		}()
	}
	go func() {
		pwg.Wait()
		close(ch)
	}()
	sums := make([]int64, consumers)
	var cwg sync.WaitGroup
	for c := 0; c < consumers; c++ {
		cwg.Add(1)
		go func(c int) {
			defer cwg.Done()
			var s int64
			for v := range ch {
				s += v
			}
			sums[c] = s
		}(c)
	}
	cwg.Wait()
	var sum int64
	for _, s := range sums {
		sum += s
	}
	return sum
}

// mapStage fans `in` out to `workers` goroutines applying f; their results
// fan in to one buffered output channel, closed once every worker is done.
func mapStage(in <-chan int64, workers, buffer int, f func(int64) int64) <-chan int64 {
	out := make(chan int64, buffer)
	var wg sync.WaitGroup
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer wg.Done()
			for v := range in {
				out <- f(v)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// W4: generator -> map x*2 (2 workers) -> map x+1 (2 workers) -> fan-in -> sum.
func pipeline(n int64, capacity, workers int) int64 {
	gen := make(chan int64, capacity)
	go func() {
		for i := int64(0); i < n; i++ {
			gen <- i
		}
		close(gen)
	}()
	doubled := mapStage(gen, workers, capacity, func(x int64) int64 { return x * 2 })
	out := mapStage(doubled, workers, capacity, func(x int64) int64 { return x + 1 })
	var sum int64
	for v := range out {
		sum += v
	}
	return sum
}

// W5 serial reference: the same jobs on the calling goroutine.
func serial(n int, iters int) uint64 {
	var sum uint64
	for i := 0; i < n; i++ {
		sum += job(uint64(i), iters)
	}
	return sum
}

// W5: a fixed pool of workers over a bounded job queue; a submitter goroutine
// sends the jobs and closes; the caller reads the results.
func workerPool(n, workers, queue, iters int) uint64 {
	jobs := make(chan uint64, queue)
	results := make(chan uint64, 1024)
	var wg sync.WaitGroup
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- job(j, iters)
			}
		}()
	}
	go func() {
		for i := 0; i < n; i++ {
			jobs <- uint64(i)
		}
		close(jobs)
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	var sum uint64
	for r := range results {
		sum += r
	}
	return sum
}

// W6: the seeds' fan-out to I/O-bound workers: w6Workers goroutines read
// jobs, wait w6Latency (a stand-in for a network call) and send the job on.
func ioFanOut(jobs int64) int64 {
	in := make(chan int64, w6Capacity)
	out := make(chan int64, w6Capacity)
	go func() {
		for j := int64(0); j < jobs; j++ {
			in <- j
		}
		close(in)
	}()
	var wg sync.WaitGroup
	wg.Add(w6Workers)
	for w := 0; w < w6Workers; w++ {
		go func() {
			defer wg.Done()
			for j := range in {
				time.Sleep(w6Latency)
				out <- j
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	var sum int64
	for r := range out {
		sum += r
	}
	return sum
}

// W7: fan-in by select over w7Inputs channels; a closed input is set to nil.
func selectFanIn(n int64) int64 {
	var ins [w7Inputs]chan int64
	for p := range ins {
		ins[p] = make(chan int64, w7Capacity)
		go func(p int, ch chan int64) {
			hi := n * int64(p+1) / w7Inputs
			for i := n * int64(p) / w7Inputs; i < hi; i++ {
				ch <- i
			}
			close(ch)
		}(p, ins[p])
	}
	var sum int64
	a, b, c, d := ins[0], ins[1], ins[2], ins[3]
	for open := w7Inputs; open > 0; {
		select {
		case v, ok := <-a:
			if ok {
				sum += v
			} else {
				a, open = nil, open-1
			}
		case v, ok := <-b:
			if ok {
				sum += v
			} else {
				b, open = nil, open-1
			}
		case v, ok := <-c:
			if ok {
				sum += v
			} else {
				c, open = nil, open-1
			}
		case v, ok := <-d:
			if ok {
				sum += v
			} else {
				d, open = nil, open-1
			}
		}
	}
	return sum
}

// measure runs fn reps times and returns the median items/s. fn returns
// whether its result was correct; a wrong result aborts the program.
func measure(name string, reps int, items int64, verbose bool, fn func() bool) float64 {
	rates := make([]float64, 0, reps)
	for r := 0; r < reps; r++ {
		start := time.Now()
		ok := fn()
		d := time.Since(start)
		if !ok {
			fmt.Fprintf(os.Stderr, "%s: wrong result\n", name)
			os.Exit(1)
		}
		rates = append(rates, float64(items)/d.Seconds())
	}
	if verbose {
		fmt.Printf("# %s reps:", name)
		for _, r := range rates {
			fmt.Printf(" %.0f", r)
		}
		fmt.Println()
	}
	sort.Float64s(rates)
	if len(rates)%2 == 1 {
		return rates[len(rates)/2]
	}
	return (rates[len(rates)/2-1] + rates[len(rates)/2]) / 2
}

func main() {
	reps := flag.Int("reps", 5, "repetitions per workload; the median is printed")
	iters := flag.Int("iters", defaultJobIters, "W5: xorshift steps per job (≈2 µs at the default)")
	only := flag.String("only", "", "comma-separated workloads to run (W1,...,W5); default all")
	w6Jobs := flag.Int64("w6_jobs", w6JobsDef, "W6: jobs per repetition")
	verbose := flag.Bool("v", false, "also print every repetition's rate")
	flag.Parse()
	if *reps < 1 || *iters < 0 {
		fmt.Fprintln(os.Stderr, "-reps must be >= 1 and -iters >= 0")
		os.Exit(2)
	}
	want := func(w string) bool {
		if *only == "" {
			return true
		}
		for _, s := range strings.Split(*only, ",") {
			if strings.EqualFold(strings.TrimSpace(s), w) {
				return true
			}
		}
		return false
	}

	fmt.Printf("# sluice bench anchor: go=%s GOMAXPROCS=%d NumCPU=%d reps=%d job_iters=%d\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), *reps, *iters)
	fmt.Printf("# job_check=0x%016x\n", jobCheck(*iters))

	if want("W1") {
		n := int64(w1Items)
		rate := measure("W1", *reps, n, *verbose, func() bool { return spsc(n, w1Capacity) == n*(n-1)/2 })
		fmt.Printf("W1 spsc go %.0f\n", rate)
	}
	if want("W2") {
		n := int64(w2Items)
		rate := measure("W2", *reps, n, *verbose, func() bool {
			return mpmc(n, w2Capacity, w2Workers, w2Workers) == n*(n-1)/2
		})
		fmt.Printf("W2 mpmc go %.0f\n", rate)
	}
	if want("W3") {
		n := int64(w3Items)
		rate := measure("W3", *reps, n, *verbose, func() bool { return spsc(n, 0) == n*(n-1)/2 })
		fmt.Printf("W3 unbuffered go %.0f\n", rate)
	}
	if want("W4") {
		n := int64(w4Items)
		// sum over x of (2x + 1) for x in 0..n-1 = n(n-1) + n = n².
		rate := measure("W4", *reps, n, *verbose, func() bool { return pipeline(n, w4Capacity, w4Workers) == n*n })
		fmt.Printf("W4 pipeline go %.0f\n", rate)
	}
	if want("W5") {
		n := w5Jobs
		expected := serial(n, *iters) // also warms up
		serialRate := measure("W5 serial", *reps, int64(n), *verbose, func() bool { return serial(n, *iters) == expected })
		poolRate := measure("W5 pool", *reps, int64(n), *verbose, func() bool {
			return workerPool(n, w5Workers, w5Queue, *iters) == expected
		})
		fmt.Printf("W5 serial go %.0f\n", serialRate)
		fmt.Printf("W5 pool go %.0f\n", poolRate)
		fmt.Printf("W5 efficiency go %.3f\n", poolRate/(float64(w5Workers)*serialRate))
		fmt.Printf("# W5 job_ns=%.0f (serial ns per job)\n", 1e9/serialRate)
	}
	if want("W6") {
		n := *w6Jobs
		rate := measure("W6", *reps, n, *verbose, func() bool { return ioFanOut(n) == n*(n-1)/2 })
		ideal := float64(w6Workers) / w6Latency.Seconds()
		fmt.Printf("W6 io_fan_out go %.0f\n", rate)
		fmt.Printf("# W6 efficiency go %.3f (ideal %.0f jobs/s)\n", rate/ideal, ideal)
	}
	if want("W7") {
		n := int64(w7Items)
		rate := measure("W7", *reps, n, *verbose, func() bool { return selectFanIn(n) == n*(n-1)/2 })
		fmt.Printf("W7 select_fan_in go %.0f\n", rate)
	}
}
