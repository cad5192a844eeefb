# gpt2(): the R gpt2 package's function, argument for argument, on the engine's model.generate.

gpt2 <- function(prompt = "Hello my name is",
                 model = c("124M", "355M", "774M", "1558M"),
                 seed = NULL,
                 batch_size = 1,
                 total_tokens = NULL,
                 temperature = 1,
                 top_k = 0,
                 top_p = 1) {
  check_prompts(prompt)
  check_whole("seed", seed, 0, null = "a fresh seed")
  check_whole("batch_size", batch_size, 1)
  check_whole("total_tokens", total_tokens, 1, null = "as many as fit in the context")
  check_real("temperature", temperature, "a number >= 0 (0 is greedy decoding)", function(t) t >= 0)
  check_whole("top_k", top_k, 0)
  check_real("top_p", top_p, "in (0, 1] (1 keeps every token)", function(p) p > 0 && p <= 1)
  greedy <- temperature == 0
  if (greedy && batch_size > 1) {
    fail("batch_size > 1 needs sampling (temperature > 0): greedy decoding gives the same text every time")
  }
  loaded <- load_model(model)

  # The engine's sampling controls: 0 top_k and 1 top_p are "off" (None). Greedy decoding takes
  # the most probable token, which top-k and top-p always keep, so they are not passed with it
  # (the engine refuses them there). A sample without a seed takes one from R's generator, so
  # set.seed() before gpt2() reproduces it.
  sampling <- list(temperature = temperature, top_k = NULL, top_p = NULL, seed = NULL)
  if (!greedy) {
    if (top_k > 0) sampling$top_k <- top_k
    if (top_p < 1) sampling$top_p <- top_p
    sampling$seed <- if (is.null(seed)) sample.int(.Machine$integer.max, 1L) else seed
  }

  texts <- lapply(seq_along(prompt), function(i) {
    generate_one(loaded, prompt[[i]], if (length(prompt) > 1) i, total_tokens, batch_size, sampling)
  })
  # sapply(prompt, ...)'s shape and names, as the old package returned: one string per prompt
  # named by the prompts (or their names), or with batch_size > 1 a matrix of batch_size rows
  # and one column per prompt.
  labels <- if (is.null(names(prompt))) prompt else names(prompt)
  if (batch_size == 1) {
    texts <- unlist(texts)
    names(texts) <- labels
    return(texts)
  }
  matrix(unlist(texts), nrow = batch_size, dimnames = list(NULL, labels))
}

# batch_size continuations (the new text only) of one prompt. total_tokens NULL is as many new
# tokens as fit in the context after the prompt; a number is that many, or as many as fit when
# fewer do (the old package's min(total_tokens, 1023 - prompt tokens), with the full context).
generate_one <- function(loaded, prompt, index, total_tokens, batch_size, sampling) {
  bos <- !nzchar(prompt)  # "": an unconditional sample, starting from <|endoftext|>
  n_prompt <- length(call_engine("encode", loaded$model, prompt)) + bos
  n_ctx <- loaded$info$n_positions
  which <- if (is.null(index)) "the prompt" else sprintf("prompt %d", index)
  if (n_prompt > n_ctx) {
    fail("%s has %d tokens, more than the model's context of %d tokens", which, n_prompt, n_ctx)
  }
  if (n_prompt == n_ctx) {
    fail("%s has %d tokens, which fill the model's context of %d tokens: no new token fits", which, n_prompt, n_ctx)
  }
  room <- n_ctx - n_prompt
  max_new_tokens <- if (is.null(total_tokens)) room else min(total_tokens, room)
  call_engine("generate", loaded$model, prompt,
              max_new_tokens = as.integer(max_new_tokens),
              temperature = sampling$temperature, top_k = sampling$top_k, top_p = sampling$top_p,
              seed = sampling$seed, num_return_sequences = as.integer(batch_size), bos = bos)
}

# Argument checks: one R error naming the argument, the rule and the value given.

check_prompts <- function(prompt) {
  if (!is.character(prompt) || length(prompt) == 0L || anyNA(prompt)) {
    fail("prompt must be a character vector of one or more prompts (no NA), got %s", shown(prompt))
  }
}

check_whole <- function(name, value, low, null = NULL) {
  if (is.null(value) && !is.null(null)) {
    return(invisible(NULL))
  }
  ok <- is.numeric(value) && length(value) == 1L && !is.na(value) && is.finite(value) &&
    value == round(value) && value >= low && value <= 2^53
  if (!ok) {
    rule <- sprintf("a whole number >= %d", low)
    if (!is.null(null)) rule <- sprintf("NULL (%s) or %s", null, rule)
    if (name == "top_k") rule <- paste(rule, "(0 keeps every token)")
    fail("%s must be %s, got %s", name, rule, shown(value))
  }
}

check_real <- function(name, value, rule, holds) {
  if (!is.numeric(value) || length(value) != 1L || is.na(value) || !is.finite(value) || !holds(value)) {
    fail("%s must be %s, got %s", name, rule, shown(value))
  }
}

shown <- function(value) {
  if (is.null(value)) {
    return("NULL")
  }
  text <- paste(deparse(value, width.cutoff = 60L), collapse = " ")
  if (nchar(text) > 60L) paste0(substr(text, 1L, 57L), "...") else text
}
