# References of tests/test_reliability.py (issue 16), made on this project's machine with
# R 4.2.2 Patched (2022-11-10 r83330) and lme4 1.1.31:  Rscript tests/data/reliability_references.R
suppressMessages(library(lme4))
# a group SD 95 times the residual SD (theta beyond the solver's default bound of 50);
# the CSV is numpy's default_rng(11): y = 5 + N(0, 100)[g] + N(0, 1), 30 groups of 10
d <- read.csv("tests/data/lmm_large_variance_ratio.csv"); d$g <- factor(d$g)
m <- lmer(y ~ 1 + (1 | g), data = d, REML = TRUE)
cat(sprintf('{"call": "lmer(y ~ 1 + (1 | g), data = d, REML = TRUE)", "theta": %.10g, "sigma": %.10g, "sd_g": %.10g, "fixef": %.10g, "REMLcrit": %.10g}\n',
  getME(m, "theta"), sigma(m), as.data.frame(VarCorr(m))$sdcor[1], fixef(m)[1], REMLcrit(m)),
  file = "tests/data/lmm_large_variance_ratio.json")
# precision weights scaled by a constant c (the data of the weights test): theta / sqrt(c), sigma * sqrt(c)
set.seed(1)
g <- factor(rep(1:12, each = 6)); x <- rnorm(72)
y <- 1 + 0.5 * x + rnorm(12, 0, 0.7)[g] + rnorm(72, 0, 0.5)
w <- runif(72, 0.5, 2)
for (c in c(1, 1e6, 1e-10)) {
  m <- lmer(y ~ x + (1 | g), weights = c * w)
  cat(sprintf("c=%g theta=%.6f sigma=%.6g sdb=%.6f\n", c, getME(m, "theta"), sigma(m),
              as.data.frame(VarCorr(m))$sdcor[1]))
}
# prints: c=1 theta=1.310676 sigma=0.468631 sdb=0.614223
#         c=1e+06 theta=0.001317 sigma=468.324 sdb=0.616590   (lmer warns: failed to converge)
#         c=1e-10 theta=131071.787647 sigma=4.68629e-06 sdb=0.614240
