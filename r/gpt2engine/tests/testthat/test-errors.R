# Bad arguments are R errors that name the argument; the engine's refusals arrive as R errors with
# the engine's one-line message, never a Python traceback.

test_that("bad sampling arguments are R errors naming the argument, before any model is loaded", {
  loads <- gpt2engine:::the$loads
  expect_error(gpt2("Hi", model = "no-such-model", temperature = -1),
               "temperature must be a number >= 0 (0 is greedy decoding), got -1", fixed = TRUE)
  for (p in list(0, 1.5, -0.2, NA_real_, "0.9", c(0.5, 0.6))) {
    expect_error(gpt2("Hi", top_p = p), "top_p must be in (0, 1] (1 keeps every token), got ", fixed = TRUE)
  }
  expect_error(gpt2("Hi", top_k = -1), "top_k must be a whole number >= 0 (0 keeps every token), got -1", fixed = TRUE)
  expect_error(gpt2("Hi", top_k = 2.5), "top_k must be a whole number >= 0", fixed = TRUE)
  expect_error(gpt2("Hi", batch_size = 0), "batch_size must be a whole number >= 1, got 0", fixed = TRUE)
  expect_error(gpt2("Hi", total_tokens = 0),
               "total_tokens must be NULL (as many as fit in the context) or a whole number >= 1, got 0", fixed = TRUE)
  expect_error(gpt2("Hi", seed = -3), "seed must be NULL (a fresh seed) or a whole number >= 0, got -3", fixed = TRUE)
  expect_error(gpt2(NA_character_), "prompt must be a character vector of one or more prompts (no NA)", fixed = TRUE)
  expect_error(gpt2(character()), "prompt must be a character vector", fixed = TRUE)
  expect_error(gpt2("Hi", model = c("124M", "355M")), "model must be one of", fixed = TRUE)
  expect_error(gpt2("Hi", temperature = 0, batch_size = 3),
               "batch_size > 1 needs sampling (temperature > 0)", fixed = TRUE)
  expect_identical(gpt2engine:::the$loads, loads)
})

test_that("an unknown model name is the engine's one-line error", {
  skip_without_engine()
  error <- tryCatch(gpt2("Hi", model = "999M"), error = identity)
  expect_s3_class(error, "gpt2engine_error")
  expect_s3_class(error, "gpt2engine_ModelNotFoundError")
  expect_match(conditionMessage(error), "^unknown model '999M': not a directory, and not a published name")
  expect_match(conditionMessage(error), "124M/355M/774M/1558M", fixed = TRUE)
  expect_no_match(conditionMessage(error), "Traceback|\n")
  expect_error(gpt2("Hi", model = "./no/such/dir"), "./no/such/dir: no such model directory", fixed = TRUE)
})

test_that("a prompt longer than the context is an R error that says the limit", {
  skip_without_engine()
  long <- strrep(" hello", 300)
  n <- length(py_model()$tokenizer$encode(long))
  expect_error(gpt2(long, model = TINY),
               sprintf("the prompt has %d tokens, more than the model's context of 256 tokens", n), fixed = TRUE)
  expect_error(gpt2(c("ROMEO:", long), model = TINY, total_tokens = 5),
               sprintf("prompt 2 has %d tokens, more than the model's context of 256 tokens", n), fixed = TRUE)
  full <- strrep(" hello", 256)
  expect_identical(length(py_model()$tokenizer$encode(full)), 256L)
  expect_error(gpt2(full, model = TINY), "which fill the model's context of 256 tokens: no new token fits", fixed = TRUE)
})

test_that("engine errors carry exactly the engine's message, and their type as a class", {
  skip_without_engine()
  error <- tryCatch(gpt2_score("a", model = TINY), error = identity)
  expect_s3_class(error, "gpt2engine_InputError")
  expect_identical(conditionMessage(error), py_error_message("m.score('a')"))
  expect_match(conditionMessage(error), "scoring needs at least 2", fixed = TRUE)
  error <- tryCatch(gpt2_score("To be, or not to be", model = TINY, context = 4, stride = 9), error = identity)
  expect_identical(conditionMessage(error), py_error_message("m.score('To be, or not to be', context=4, stride=9)"))
  expect_error(gpt2_score("To be", model = TINY, context = 1), "context must be NULL (the model's context) or a whole number >= 2", fixed = TRUE)
  expect_error(gpt2_explain("ROMEO:", model = TINY, browse = FALSE, methods = "telepathy"),
               class = "gpt2engine_InputError")
})
