"""Speed benchmark of the streaming methods (EVSS and its optimised variants, DAVSS).

The modules, one concern each:

* :mod:`.variants`: variant names (``original``, ``exact``, ``fast``, ``NAME@SCALE``), loading the
  nets, the LRASPP per-frame baseline;
* :mod:`.inputs`: the synthetic frames every measurement runs on;
* :mod:`.stages`: per runner, zero-argument functions for each stage, driving the public stream;
* :mod:`.timing`: interleaved timings, paired ratios, the conv peak, PNG decoding on its own;
* :mod:`.flops`: FLOPs per stage; :mod:`.memory`: peak memory in a fresh worker process;
* :mod:`.accuracy`: output differences of two variants, the fast mode's mIoU change;
* :mod:`.loader`: data-loader throughput (frames per second);
* :mod:`.suite`: one benchmark run, its results as the JSON ``tools/benchmark.py --json`` writes;
* :mod:`.report`: the printed table; :mod:`.plot`: the bar chart of such JSON files.
"""
