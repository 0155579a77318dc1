# Extra lme4 references for several grouping factors (issue 4), made on this
# project's machine with R and lme4 (versions recorded in the JSON). Not run by
# the tests: they read the CSV/JSON written here.
#   Rscript tests/data/extra_references.R   (from the repository root)
suppressMessages(library(lme4))
library(jsonlite)
out <- "tests/data"

record <- function(m, case, call, data_file, extra = list()) {
  vc <- as.data.frame(VarCorr(m))
  tight <- NA
  res <- list(
    case = case, engine = paste("lme4", packageVersion("lme4")), r_version = R.version.string,
    call = call, data = data_file,
    fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
    theta = unname(getME(m, "theta")), theta_names = names(getME(m, "theta")),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(group = vc$grp[i], var1 = vc$var1[i],
      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    loglik = as.numeric(logLik(m)), n_obs = nobs(m),
    n_groups = as.list(sapply(ranef(m), nrow)),
    ranef = lapply(ranef(m), function(r) as.list(r))
  )
  res <- c(res, extra)
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
             file.path(out, paste0(case, ".json")))
}

# nested: users within clinics, Poisson counts
set.seed(20261130)
n_clinic <- 12; users_per <- 8; n_obs <- 15
clinic <- rep(sprintf("c%02d", 1:n_clinic), each = users_per * n_obs)
user <- rep(rep(sprintf("u%d", 1:users_per), each = n_obs), n_clinic)  # labels repeat across clinics
x <- round(rnorm(length(clinic)), 6)
b_clinic <- rnorm(n_clinic, 0, 0.5)[as.integer(factor(clinic))]
cu <- interaction(clinic, user, drop = TRUE)
b_user <- rnorm(nlevels(cu), 0, 0.3)[as.integer(cu)]
y <- rpois(length(x), exp(0.4 + 0.3 * x + b_clinic + b_user))
nested <- data.frame(clinic = clinic, user = user, x = x, y = y)
write.csv(nested, file.path(out, "nested_poisson_sim.csv"), row.names = FALSE)
m <- glmer(y ~ x + (1 | clinic/user), data = nested, family = poisson,
           control = glmerControl(optimizer = "bobyqa"))
pw <- getME(m, "devfun"); tight <- NA
record(m, "nested_poisson_sim", "glmer(y ~ x + (1 | clinic/user), data = nested, family = poisson, control = glmerControl(optimizer = 'bobyqa'))",
       "nested_poisson_sim.csv")

# uncorrelated intercept and slope: sleepstudy (Days || Subject), REML
sleep <- read.csv(file.path(out, "sleepstudy.csv"), colClasses = c(Subject = "character"))
m2 <- lmer(Reaction ~ Days + (Days || Subject), data = sleep)
record(m2, "sleepstudy_uncorrelated", "lmer(Reaction ~ Days + (Days || Subject), data = sleepstudy)",
       "sleepstudy.csv", list(sigma = sigma(m2), REML = TRUE))
