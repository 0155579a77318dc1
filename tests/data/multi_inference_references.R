# lme4 references for inference with several grouping factors and '||' terms:
# profile and bootstrap confidence intervals of GLMMs, conditional SDs (condVar)
# of LMMs. Made on this project's machine with R and lme4 (versions recorded in
# the JSON). Not run by the tests: they read tests/data/multi_inference.json.
#   Rscript tests/data/multi_inference_references.R   (from the repository root)
#
# The GLMMs are refitted with a tight optimiser tolerance (bobyqa, rhoend =
# 1e-10) so that the profile's reference deviance is the optimum itself; the
# JSON records the log-likelihood reached.
suppressMessages(library(lme4))
library(jsonlite)
out <- "tests/data"

tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))

interval_record <- function(ci) {
  list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}

glmm_case <- function(m, call, data_file, boot_nsim = 0) {
  t0 <- Sys.time()
  prof <- confint(m, method = "profile")
  t_prof <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  res <- list(
    call = call, data = data_file,
    loglik = as.numeric(logLik(m)), theta = unname(getME(m, "theta")),
    theta_names = names(getME(m, "theta")), fixef = as.list(fixef(m)),
    profile = interval_record(prof), profile_seconds = t_prof
  )
  if (boot_nsim > 0) {
    t0 <- Sys.time()
    boot <- confint(m, method = "boot", nsim = boot_nsim, seed = 101, boot.type = "perc")
    res$bootstrap <- c(interval_record(boot), list(nsim = boot_nsim, seed = 101,
      seconds = as.numeric(difftime(Sys.time(), t0, units = "secs"))))
  }
  res
}

condsd_record <- function(m) {
  # condsd = sqrt of the diagonal of attr(, "postVar"): sigma^2 Lambda A^{-1} Lambda^T for lmer
  cv <- as.data.frame(ranef(m, condVar = TRUE))
  out <- list()
  for (g in unique(as.character(cv$grpvar))) {
    part <- cv[cv$grpvar == g, ]
    levels <- unique(as.character(part$grp))
    out[[g]] <- setNames(lapply(levels, function(l) {
      rows <- part[as.character(part$grp) == l, ]
      setNames(as.list(rows$condsd), as.character(rows$term))
    }), levels)
  }
  out
}

result <- list(engine = paste("lme4", packageVersion("lme4")), r_version = R.version.string)

# crossed binary (tests/data/crossed_binary_sim.csv)
crossed <- read.csv(file.path(out, "crossed_binary_sim.csv"), colClasses = c(subject = "character", item = "character"))
m1 <- glmer(y ~ x + (1 | subject) + (1 | item), data = crossed, family = binomial, control = tight)
result$crossed_binary <- glmm_case(m1,
  "glmer(y ~ x + (1 | subject) + (1 | item), data = crossed_binary_sim, family = binomial, control = tight)",
  "crossed_binary_sim.csv", boot_nsim = 500)

# nested Poisson (tests/data/nested_poisson_sim.csv)
nested <- read.csv(file.path(out, "nested_poisson_sim.csv"), colClasses = c(clinic = "character", user = "character"))
m2 <- glmer(y ~ x + (1 | clinic/user), data = nested, family = poisson, control = tight)
result$nested_poisson <- glmm_case(m2,
  "glmer(y ~ x + (1 | clinic/user), data = nested_poisson_sim, family = poisson, control = tight)",
  "nested_poisson_sim.csv")

# uncorrelated intercept and slope, Poisson (tests/data/app_engagement.csv)
app <- read.csv(file.path(out, "app_engagement.csv"), colClasses = c(user_id = "character"))
m3 <- glmer(logins ~ day_centered + (day_centered || user_id), data = app, family = poisson, control = tight)
result$app_uncorrelated <- glmm_case(m3,
  "glmer(logins ~ day_centered + (day_centered || user_id), data = app_engagement, family = poisson, control = tight)",
  "app_engagement.csv")

# crossed Poisson with an uncorrelated intercept and slope on the factor with
# fewer levels: lme4 puts the bars in the order subject, item.1 (slope), item
set.seed(20261201)
n_subject <- 50; n_item <- 20
subject <- rep(sprintf("s%02d", 1:n_subject), each = n_item)
item <- rep(sprintf("i%02d", 1:n_item), times = n_subject)
x <- round(rnorm(n_subject * n_item), 6)
eta <- 0.3 + 0.4 * x + rnorm(n_subject, 0, 0.5)[as.integer(factor(subject))] +
  rnorm(n_item, 0, 0.4)[as.integer(factor(item))] + rnorm(n_item, 0, 0.3)[as.integer(factor(item))] * x
crossed_slopes <- data.frame(subject = subject, item = item, x = x, y = rpois(length(x), exp(eta)))
write.csv(crossed_slopes, file.path(out, "crossed_slopes_sim.csv"), row.names = FALSE)
m4 <- glmer(y ~ x + (x || item) + (1 | subject), data = crossed_slopes, family = poisson, control = tight)
result$crossed_slopes <- glmm_case(m4,
  "glmer(y ~ x + (x || item) + (1 | subject), data = crossed_slopes_sim, family = poisson, control = tight)",
  "crossed_slopes_sim.csv")
result$crossed_slopes$varcorr <- as.data.frame(VarCorr(m4))
# the same data with a correlated intercept and slope on item (a correlation row, .sig03)
m5 <- glmer(y ~ x + (x | item) + (1 | subject), data = crossed_slopes, family = poisson, control = tight)
result$crossed_slopes_correlated <- glmm_case(m5,
  "glmer(y ~ x + (x | item) + (1 | subject), data = crossed_slopes_sim, family = poisson, control = tight)",
  "crossed_slopes_sim.csv")
result$crossed_slopes_correlated$varcorr <- as.data.frame(VarCorr(m5))

# LMM conditional SDs and profiles
sleep <- read.csv(file.path(out, "sleepstudy.csv"), colClasses = c(Subject = "character"))
pen <- read.csv(file.path(out, "penicillin.csv"), colClasses = c(plate = "character", sample = "character"))
lmm_case <- function(m, call, data_file) {
  list(call = call, data = data_file, loglik = as.numeric(logLik(m)), sigma = sigma(m),
       theta = unname(getME(m, "theta")), REML = isREML(m), ranef_condsd = condsd_record(m),
       profile = interval_record(confint(m, method = "profile")))
}
result$sleepstudy_rs_reml <- lmm_case(lmer(Reaction ~ Days + (Days | Subject), data = sleep),
  "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)", "sleepstudy.csv")
result$sleepstudy_uncorrelated_reml <- lmm_case(lmer(Reaction ~ Days + (Days || Subject), data = sleep),
  "lmer(Reaction ~ Days + (Days || Subject), data = sleepstudy)", "sleepstudy.csv")
result$penicillin_crossed_ml <- lmm_case(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = pen, REML = FALSE),
  "lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = penicillin, REML = FALSE)", "penicillin.csv")

writeLines(toJSON(result, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
           file.path(out, "multi_inference.json"))
