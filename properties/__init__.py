"""The property suite of ddpm-verify: the float64 reference proved by independent routes, and the
checker's own self-checks (`pytest properties/`, or `ddpm-verify check reference`)."""
