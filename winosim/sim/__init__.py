"""The simulated machine, block by block: storage formats (`formats`), tiling of a layer into passes through
the global buffer (`plan`), the PE array's per-pass time from per-unit work (`pe_array`), the discrete-event
pipeline of loader, transform units, PE array and writer sharing one DRAM channel (`pipeline`), and the
frozen, additive results (`results`). `winosim.simulate` ties them together."""
