module sluice/bench

go 1.19
