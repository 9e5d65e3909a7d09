"""The Python side of benches/process_pool.rs: the same workloads on
concurrent.futures.ProcessPoolExecutor, each timed in-process (interpreter start-up excluded).
Prints one number, ns per job (submit, map) or ns to the first result (first)."""
import concurrent.futures as cf
import sys
import time


def tiny(_):
    return sum(range(100))


def inc(x):
    return x + 1


def main():
    which, workers = sys.argv[1], int(sys.argv[2])
    if which == "first":
        t = time.perf_counter_ns()
        with cf.ProcessPoolExecutor(workers) as ex:
            ex.submit(tiny, 0).result()
            dt = time.perf_counter_ns() - t
        print(dt)
        return
    with cf.ProcessPoolExecutor(workers) as ex:
        list(ex.map(tiny, range(4 * workers)))  # every worker started
        if which == "submit":
            n = 10_000
            t = time.perf_counter_ns()
            futs = [ex.submit(tiny, i) for i in range(n)]
            for f in futs:
                f.result()
        else:
            n = 1_000_000
            t = time.perf_counter_ns()
            sum(ex.map(inc, range(n), chunksize=1000))
        dt = time.perf_counter_ns() - t
    print(dt / n)


if __name__ == "__main__":
    main()
