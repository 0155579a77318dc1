# drop1(m, test = "Chisq") references (likelihood-ratio test per fixed term) for
# sklearn_glmm.drop1. Made on this project's machine (Debian bookworm: R 4.2.2,
# lme4 1.1.31, glmmTMB 1.1.5); versions recorded in the JSON. Not run by the
# tests: they read tests/data/drop1_references.json.
#   Rscript tests/data/drop1_references.R   (from the repository root)
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
out <- "tests/data"
read_case <- function(file, factors) {
  classes <- setNames(rep("character", length(factors)), factors)
  read.csv(file.path(out, file), colClasses = classes)
}
table_of <- function(m, call) {
  t <- drop1(m, test = "Chisq")
  list(call = call, formula = paste(deparse(formula(m)), collapse = ""),
       terms = rownames(t), npar = if ("npar" %in% names(t)) t$npar else t$Df, AIC = t$AIC, LRT = t$LRT,
       p = t[[ncol(t)]],  # "Pr(Chi)" (lme4) or "Pr(>Chi)" (stats, glmmTMB)
       loglik = as.numeric(logLik(m)))
}
cases <- list()
d <- read_case("app_engagement.csv", "user_id")
cases$app_engagement_ri <- table_of(glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson),
  "glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson)")
sleep <- read_case("sleepstudy.csv", "Subject")
cases$sleepstudy_ml <- table_of(lmer(Reaction ~ Days + (Days | Subject), data = sleep, REML = FALSE),
  "lmer(Reaction ~ Days + (Days | Subject), data = sleep, REML = FALSE)")
cbpp <- read_case("cbpp.csv", c("herd", "period"))
cases$cbpp_tmb <- table_of(glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial),
  "glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)")
owls <- read_case("owls.csv", "Nest")
owls$FoodTreatment <- factor(owls$FoodTreatment, levels = c("Deprived", "Satiated"))
owls$SexParent <- factor(owls$SexParent, levels = c("Female", "Male"))
cases$owls_nb <- table_of(glmmTMB(SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest),
  data = owls, family = nbinom2),
  "glmmTMB(SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest), data = owls, family = nbinom2)")
cases$owls_nb_additive <- table_of(glmmTMB(SiblingNegotiation ~ FoodTreatment + SexParent + offset(log(BroodSize)) + (1 | Nest),
  data = owls, family = nbinom2),
  "glmmTMB(SiblingNegotiation ~ FoodTreatment + SexParent + offset(log(BroodSize)) + (1 | Nest), data = owls, family = nbinom2)")
res <- list(engine = sprintf("R %s, lme4 %s, glmmTMB %s", paste(R.version$major, R.version$minor, sep = "."),
                             packageVersion("lme4"), packageVersion("glmmTMB")),
            measures = "drop1(m, test = 'Chisq'): rows '<none>' then each droppable term (drop.scope), columns npar, AIC, LRT, Pr(Chi)",
            cases = cases)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           file.path(out, "drop1_references.json"))
