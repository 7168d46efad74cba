"""The CPU-bound workload shared by the benchmark apps (cpu.py) and the
sub-interpreter experiments (bench/experiments/experiments.py, which also ships its source into
sub-interpreters): pure Python, no imports, so it runs anywhere unchanged."""


def pi_digits(n):
    """First n decimal digits of pi (Gibbons' unbounded spigot, Python ints only)."""
    q, r, t, k, m, x = 1, 0, 1, 1, 3, 3
    out = []
    while len(out) < n:
        if 4 * q + r - t < m * t:
            out.append(m)
            q, r, m = 10 * q, 10 * (r - m * t), (10 * (3 * q + r)) // t - 10 * m
        else:
            q, r, t, k, m, x = (q * k, (2 * q + r) * x, t * x, k + 1,
                                (q * (7 * k + 2) + r * x) // (t * x), x + 2)
    return "".join(map(str, out))
