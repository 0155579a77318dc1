# emmeans references for sklearn_glmm.marginal_predictions: predictions on the response
# scale at a grid with delta-method SEs and back-transformed intervals. Made on this
# project's machine (Debian bookworm: R 4.2.2, lme4 1.1.31, emmeans from r-cran-emmeans);
# versions recorded in the JSON. Not run by the tests.
#   Rscript tests/data/emmeans_references.R   (from the repository root)
suppressMessages({library(lme4); library(emmeans); library(jsonlite)})
out <- "tests/data"
d <- read.csv(file.path(out, "app_engagement.csv"), colClasses = c(user_id = "character"))
ri <- glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson)
grid <- c(-10, 0, 10)
s <- summary(emmeans(ri, ~ day_centered, at = list(day_centered = grid), type = "response"))
res <- list(
  engine = sprintf("R %s, lme4 %s, emmeans %s", paste(R.version$major, R.version$minor, sep = "."),
                   packageVersion("lme4"), packageVersion("emmeans")),
  call = "summary(emmeans(glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson), ~ day_centered, at = list(day_centered = c(-10, 0, 10)), type = 'response'))",
  day_centered = grid, rate = s$rate, SE = s$SE, lower = s$asymp.LCL, upper = s$asymp.UCL)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "emmeans_references.json"))
