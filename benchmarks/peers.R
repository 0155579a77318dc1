# Peer fits for benchmarks/run_benchmarks.py (issue 9). Called once per (panel, model, tool):
#
#   Rscript benchmarks/peers.R PANEL.csv MODEL TOOL REPEATS
#
# MODEL: ri | rs | binomial_ri | nb_ri;  TOOL: lme4 | lme4_nagq0 | glmmtmb (nb_ri: glmer.nb / nbinom2).
# Reads the panel written by run_benchmarks.py (identical data for every tool), fits it
# REPEATS times (fresh fit each time; only the fit is inside the timer, not reading the
# CSV) and prints tab-separated "RESULT" lines that the Python harness parses:
#   RESULT  time     <elapsed seconds of one fit>      (one line per repeat)
#   RESULT  loglik   <as.numeric(logLik(m))>           (last fit)
#   RESULT  fixef    <name> <value>                    (last fit)
#   RESULT  warning  <text>                            (warnings / convergence messages)
# Peak memory is measured from outside (the harness reads the process's max RSS).
# Exit status 3: the R package is not installed.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4) stop("usage: Rscript peers.R PANEL.csv MODEL TOOL REPEATS")
csv <- args[[1]]
model <- args[[2]]
tool <- args[[3]]
repeats <- as.integer(args[[4]])

pkg <- if (tool == "glmmtmb") "glmmTMB" else "lme4"
if (!requireNamespace(pkg, quietly = TRUE)) {
  cat("R package", pkg, "is not installed\n")
  quit(status = 3)
}
suppressPackageStartupMessages(library(pkg, character.only = TRUE))

d <- read.csv(csv, colClasses = c(user_id = "character", day_centered = "numeric",
                                  notifications = "numeric", weekend = "numeric",
                                  mood = "numeric", logins = "integer"))
d$user_id <- factor(d$user_id)

rhs <- "day_centered + notifications + weekend + mood"
form <- as.formula(switch(model,
  ri = paste("logins ~", rhs, "+ (1 | user_id)"),
  rs = paste("logins ~", rhs, "+ (1 + day_centered | user_id)"),
  binomial_ri = paste("I(logins > 0) ~", rhs, "+ (1 | user_id)"),
  nb_ri = paste("logins ~", rhs, "+ (1 | user_id)"),
  stop("unknown model ", model)))
fam <- if (model == "binomial_ri") binomial() else poisson()

fit_once <- function() {
  if (model == "nb_ri") {
    # NB2: glmmTMB's nbinom2 (size estimated jointly, as ours); lme4's glmer.nb alternates
    # between the size and the GLMM
    if (tool == "glmmtmb") glmmTMB(form, family = nbinom2, data = d) else glmer.nb(form, data = d)
  } else if (tool == "glmmtmb") {
    glmmTMB(form, family = fam, data = d)
  } else {
    # lme4 defaults (Laplace, nAGQ = 1); bobyqa for the correlated random slope, as in issue 9
    ctrl <- if (model == "rs") glmerControl(optimizer = "bobyqa") else glmerControl()
    glmer(form, family = fam, data = d, control = ctrl,
          nAGQ = if (tool == "lme4_nagq0") 0L else 1L)
  }
}

warns <- character(0)
m <- NULL
for (r in seq_len(repeats)) {
  gc()
  t <- system.time(
    m <- withCallingHandlers(fit_once(), warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  )[["elapsed"]]
  cat("RESULT\ttime\t", sprintf("%.6f", t), "\n", sep = "")
}

cat("RESULT\tloglik\t", sprintf("%.10f", as.numeric(logLik(m))), "\n", sep = "")
fe <- if (tool == "glmmtmb") fixef(m)$cond else fixef(m)
for (nm in names(fe)) cat("RESULT\tfixef\t", nm, "\t", sprintf("%.12g", fe[[nm]]), "\n", sep = "")
if (tool != "glmmtmb") {
  msgs <- m@optinfo$conv$lme4$messages
  if (length(msgs)) warns <- c(warns, msgs)
} else if (!is.null(m$fit$convergence) && m$fit$convergence != 0) {
  warns <- c(warns, paste("nlminb convergence code", m$fit$convergence, m$fit$message))
}
for (w in unique(warns)) cat("RESULT\twarning\t", gsub("[\t\n]", " ", w), "\n", sep = "")
