module tailor.dev/bench/loadgen

go 1.22
