# Scoring, perplexity and tokens: model.score, model.perplexity and model.tokenizer in R's idiom.

gpt2_score <- function(text, model = c("124M", "355M", "774M", "1558M"), context = NULL, stride = NULL,
                       bos = FALSE) {
  check_text(text, one = TRUE)
  check_window(context, stride, bos)
  loaded <- load_model(model)
  s <- call_engine("score", loaded$model, text, context = context, stride = stride, bos = bos)
  logprob <- as.numeric(unlist(s$logprobs))
  logprob[is.nan(logprob)] <- NA_real_  # the engine's NaN: a token with nothing before it to predict it
  window <- as.integer(unlist(s$window))
  scores <- data.frame(
    token = as.character(unlist(s$pieces)),
    token_id = as.integer(unlist(s$token_ids)),
    logprob = logprob,
    window = ifelse(window < 0L, NA_integer_, window + 1L),  # 1-based, as R counts
    stringsAsFactors = FALSE
  )
  for (name in c("perplexity", "mean_nll", "total_nll", "count", "context", "stride")) {
    attr(scores, name) <- s[[name]]
  }
  scores
}

gpt2_perplexity <- function(text, model = c("124M", "355M", "774M", "1558M"), context = NULL, stride = NULL,
                            bos = FALSE) {
  check_text(text)
  check_window(context, stride, bos)
  loaded <- load_model(model)
  vapply(text, function(one) {
    call_engine("perplexity", loaded$model, one, context = context, stride = stride, bos = bos)
  }, numeric(1), USE.NAMES = FALSE)
}

gpt2_tokenize <- function(text, model = c("124M", "355M", "774M", "1558M")) {
  check_text(text)
  loaded <- load_model(model)
  lapply(text, function(one) {
    ids <- as.integer(unlist(call_engine("encode", loaded$model, one)))
    names(ids) <- as.character(unlist(call_engine("pieces", loaded$model, as.list(ids))))
    ids
  })
}

check_text <- function(text, one = FALSE) {
  if (one && (!is.character(text) || length(text) != 1L || is.na(text))) {
    fail("text must be one string, got %s", shown(text))
  }
  if (!is.character(text) || length(text) == 0L || anyNA(text)) {
    fail("text must be a character vector of one or more texts (no NA), got %s", shown(text))
  }
}

check_window <- function(context, stride, bos) {
  check_whole("context", context, 2, null = "the model's context")
  check_whole("stride", stride, 1, null = "half the context")
  if (!is.logical(bos) || length(bos) != 1L || is.na(bos)) {
    fail("bos must be TRUE or FALSE, got %s", shown(bos))
  }
}
