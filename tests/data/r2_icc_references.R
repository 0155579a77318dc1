# R^2 and ICC references from R's performance package (Nakagawa, Johnson &
# Schielzeth 2017), with the variance components insight::get_variance() uses,
# for every family sklearn_glmm.r2_nakagawa covers. Made on this project's
# machine (Debian bookworm: R 4.2.2, lme4 1.1.31, glmmTMB 1.1.5, performance
# 0.10.2, insight 0.19.0); the versions are recorded in the JSON. Not run by the
# tests: they read tests/data/r2_icc_references.json.
#   Rscript tests/data/r2_icc_references.R   (from the repository root)
# glmmTMB (tight optimum) is used for binomial, negative binomial and Gamma so
# that the references do not carry lme4's loose PIRLS tolerance.
suppressMessages({library(lme4); library(glmmTMB); library(performance); library(insight); library(jsonlite)})
out <- "tests/data"

# as.data.frame(VarCorr(m)) rows (variances, then covariances) for lme4 and glmmTMB
varcorr_rows <- function(m) {
  vcs <- if (inherits(m, "glmmTMB")) VarCorr(m)$cond else VarCorr(m)
  rows <- list()
  for (g in names(vcs)) {
    S <- vcs[[g]]; nm <- rownames(S)
    for (j in seq_along(nm)) rows[[length(rows) + 1]] <- list(group = g, var1 = nm[j], var2 = NULL, vcov = S[j, j])
    for (j in seq_along(nm)) for (k in seq_along(nm)) if (k > j)
      rows[[length(rows) + 1]] <- list(group = g, var1 = nm[j], var2 = nm[k], vcov = S[k, j])
  }
  rows
}

# lme4's theta: the relative Cholesky factor per group, lower triangle column by column
theta_of <- function(m) {
  if (!inherits(m, "glmmTMB")) return(unname(getME(m, "theta")))
  unlist(lapply(VarCorr(m)$cond, function(S) { L <- t(chol(S)); L[lower.tri(L, diag = TRUE)] }), use.names = FALSE)
}

record <- function(m, call, data_file) {
  r2 <- suppressWarnings(r2_nakagawa(m))
  ic <- suppressWarnings(icc(m))
  v <- suppressWarnings(get_variance(m))
  nm <- suppressWarnings(null_model(m))
  null_fixef <- if (inherits(nm, "glmmTMB")) fixef(nm)$cond else fixef(nm)
  fe <- if (inherits(m, "glmmTMB")) fixef(m)$cond else fixef(m)
  list(call = call, data = data_file,
       fixef = as.list(fe), theta = theta_of(m), varcorr = varcorr_rows(m),
       sigma = sigma(m), loglik = as.numeric(logLik(m)),
       null_model_formula = paste(deparse(formula(nm)), collapse = ""),
       null_intercept = unname(null_fixef[1]),
       var_fixed = v$var.fixed, var_random = v$var.random, var_distribution = v$var.distribution,
       var_dispersion = v$var.dispersion, var_residual = v$var.residual,
       r2_marginal = unname(r2$R2_marginal), r2_conditional = unname(r2$R2_conditional),
       icc_adjusted = ic$ICC_adjusted, icc_unadjusted = ic$ICC_unadjusted)
}

read_case <- function(file, factors) {
  classes <- setNames(rep("character", length(factors)), factors)
  read.csv(file.path(out, file), colClasses = classes)
}

cases <- list()

d <- read_case("app_engagement.csv", "user_id")
cases$app_engagement_ri <- record(
  glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson),
  "glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson)", "app_engagement.csv")
cases$app_engagement_rs <- record(
  glmer(logins ~ day_centered + (day_centered | user_id), data = d, family = poisson,
        control = glmerControl(optimizer = "bobyqa")),
  "glmer(logins ~ day_centered + (day_centered | user_id), data = d, family = poisson, control = glmerControl(optimizer = 'bobyqa'))",
  "app_engagement.csv")

sleep <- read_case("sleepstudy.csv", "Subject")
cases$sleepstudy_reml <- record(
  lmer(Reaction ~ Days + (Days | Subject), data = sleep),
  "lmer(Reaction ~ Days + (Days | Subject), data = sleep)", "sleepstudy.csv")

cbpp <- read_case("cbpp.csv", c("herd", "period"))
cases$cbpp_tmb <- record(
  glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial),
  "glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)", "cbpp.csv")
cases$cbpp_tmb_probit <- record(
  glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial(link = "probit")),
  "glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial(link = 'probit'))",
  "cbpp.csv")

crossed <- read_case("crossed_binary_sim.csv", c("subject", "item"))
cases$crossed_binary_tmb <- record(
  glmmTMB(y ~ x + (1 | subject) + (1 | item), data = crossed, family = binomial),
  "glmmTMB(y ~ x + (1 | subject) + (1 | item), data = crossed, family = binomial)", "crossed_binary_sim.csv")

owls <- read_case("owls.csv", "Nest")
owls$FoodTreatment <- factor(owls$FoodTreatment, levels = c("Deprived", "Satiated"))
owls$SexParent <- factor(owls$SexParent, levels = c("Female", "Male"))
cases$owls_nb <- record(
  glmmTMB(SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest),
          data = owls, family = nbinom2),
  "glmmTMB(SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest), data = owls, family = nbinom2)",
  "owls.csv")

# Gamma, log link: simulated session lengths (written to gamma_sessions_sim.csv)
set.seed(20261202)
n_user <- 40; n_per <- 15
user <- rep(sprintf("u%02d", 1:n_user), each = n_per)
x <- round(rnorm(n_user * n_per), 6)
b <- rnorm(n_user, 0, 0.4)[as.integer(factor(user))]
mu <- exp(1 + 0.3 * x + b)
y <- round(rgamma(n_user * n_per, shape = 4, rate = 4 / mu), 6)
sessions <- data.frame(user = user, x = x, y = y)
write.csv(sessions, file.path(out, "gamma_sessions_sim.csv"), row.names = FALSE)
sessions <- read_case("gamma_sessions_sim.csv", "user")
cases$gamma_sessions_tmb <- record(
  glmmTMB(y ~ x + (1 | user), data = sessions, family = Gamma(link = "log")),
  "glmmTMB(y ~ x + (1 | user), data = sessions, family = Gamma(link = 'log'))", "gamma_sessions_sim.csv")

res <- list(
  engine = sprintf("R %s, lme4 %s, glmmTMB %s, performance %s, insight %s",
                   paste(R.version$major, R.version$minor, sep = "."), packageVersion("lme4"),
                   packageVersion("glmmTMB"), packageVersion("performance"), packageVersion("insight")),
  measures = "performance::r2_nakagawa(m) (R2_marginal, R2_conditional), performance::icc(m) (ICC_adjusted, ICC_unadjusted), insight::get_variance(m) components and the intercept of insight::null_model(m)",
  cases = cases)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
           file.path(out, "r2_icc_references.json"))
