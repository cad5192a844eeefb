# gpt2(): the old package's signature, and every argument's meaning checked against the Python
# engine's model.generate with the same settings.

test_that("gpt2() has the old package's signature and defaults, exactly", {
  expected <- function(prompt = "Hello my name is", model = c("124M", "355M", "774M", "1558M"),
                       seed = NULL, batch_size = 1, total_tokens = NULL, temperature = 1, top_k = 0,
                       top_p = 1) NULL
  expect_identical(formals(gpt2), formals(expected))
})

test_that("the default model is the first choice, and the sizes reach the engine's published names", {
  expect_identical(gpt2engine:::model_name(eval(formals(gpt2)$model)), "124M")
  expect_identical(gpt2engine:::model_name("355"), "355M")  # a unique prefix, as match.arg takes
  skip_without_engine()
  # With downloads off and an empty Hugging Face cache, loading says which published name it
  # looked for: the engine's own lookup maps the sizes.
  os <- reticulate::import("os")
  saved <- list(offline = os$environ$get("HF_HUB_OFFLINE"), cache = os$environ$get("HF_HUB_CACHE"))
  os$environ$update(list(HF_HUB_OFFLINE = "1", HF_HUB_CACHE = tempfile("empty-hub-")))
  on.exit({
    for (name in c("HF_HUB_OFFLINE", "HF_HUB_CACHE")) os$environ$pop(name, NULL)
    if (!is.null(saved$offline)) os$environ$update(list(HF_HUB_OFFLINE = saved$offline))
    if (!is.null(saved$cache)) os$environ$update(list(HF_HUB_CACHE = saved$cache))
  })
  published <- c("124M" = "gpt2", "355M" = "gpt2-medium", "774M" = "gpt2-large", "1558M" = "gpt2-xl")
  expect_error(gpt2(total_tokens = 1), "model 'gpt2' is not downloaded", class = "gpt2engine_ModelNotFoundError")
  for (size in names(published)) {
    expect_error(gpt2("Hi", model = size, total_tokens = 1),
                 sprintf("model '%s' is not downloaded", published[[size]]), fixed = TRUE)
  }
})

test_that("greedy decoding (temperature 0) gives the Python engine's text, named by the prompt", {
  skip_without_engine()
  out <- gpt2("ROMEO:", model = TINY, total_tokens = 12, temperature = 0)
  expect_identical(out, c("ROMEO:" = "\n\n[Enter BATO, and the King,"))  # README's greedy example
  expect_identical(unname(out), py_model()$generate("ROMEO:", max_new_tokens = 12L, temperature = 0)$text)
  # top_k and top_p cannot change a greedy token: they are accepted and change nothing.
  expect_identical(gpt2("ROMEO:", model = TINY, total_tokens = 12, temperature = 0, top_k = 3, top_p = 0.2), out)
})

test_that("a seed gives the Python engine's sample for the same seed, for every prompt", {
  skip_without_engine()
  prompts <- c("ROMEO:", "JULIET:\nO Romeo")
  out <- gpt2(prompts, model = TINY, seed = 42, total_tokens = 30, temperature = 0.9, top_k = 40)
  expect_named(out, prompts)
  for (p in prompts) {
    expected <- py_model()$generate(p, max_new_tokens = 30L, temperature = 0.9, top_k = 40L, seed = 42L)$text
    expect_identical(out[[p]], expected)
  }
  expect_identical(gpt2(prompts, model = TINY, seed = 42, total_tokens = 30, temperature = 0.9, top_k = 40), out)
  expect_false(identical(gpt2(prompts, model = TINY, seed = 43, total_tokens = 30, temperature = 0.9, top_k = 40), out))
})

test_that("without a seed, set.seed() reproduces a sample", {
  skip_without_engine()
  set.seed(1)
  a <- gpt2("KING:", model = TINY, total_tokens = 20)
  set.seed(1)
  expect_identical(gpt2("KING:", model = TINY, total_tokens = 20), a)
})

test_that("top_k = 0 and top_p = 1 are off; top_k = 1 is greedy", {
  skip_without_engine()
  off <- gpt2("KING:", model = TINY, seed = 9, total_tokens = 25)
  expect_identical(unname(off), py_model()$generate("KING:", max_new_tokens = 25L, temperature = 1, seed = 9L)$text)
  greedy <- gpt2("KING:", model = TINY, total_tokens = 25, temperature = 0)
  expect_identical(gpt2("KING:", model = TINY, seed = 9, total_tokens = 25, top_k = 1), greedy)
})

test_that("a fractional top_p samples from the nucleus, as the Python engine does", {
  skip_without_engine()
  # The old package truncated top_p with as.integer(): 0.5 became 0, which kept only the most
  # probable token (greedy decoding). Here it is Python's top_p = 0.5.
  greedy <- gpt2("KING:", model = TINY, total_tokens = 25, temperature = 0)
  samples <- vapply(1:4, function(seed) {
    out <- gpt2("KING:", model = TINY, seed = seed, total_tokens = 25, top_p = 0.5)
    expected <- py_model()$generate("KING:", max_new_tokens = 25L, temperature = 1, top_p = 0.5, seed = as.integer(seed))$text
    expect_identical(unname(out), expected)
    out
  }, "")
  expect_true(any(samples != greedy))
  expect_gt(length(unique(samples)), 1L)
})

test_that("batch_size = 3 gives 3 samples per prompt: a matrix with a column per prompt", {
  skip_without_engine()
  prompts <- c("ROMEO:", "KING:")
  out <- gpt2(prompts, model = TINY, seed = 5, batch_size = 3, total_tokens = 15)
  expect_true(is.matrix(out))
  expect_identical(dim(out), c(3L, 2L))
  expect_identical(colnames(out), prompts)
  for (p in prompts) {
    results <- py_model()$generate(p, max_new_tokens = 15L, temperature = 1, seed = 5L, num_return_sequences = 3L)
    expect_identical(out[, p], vapply(results, function(r) r$text, ""))
  }
  expect_identical(length(unique(out[, "ROMEO:"])), 3L)
  # The first sample of a batch is the single sample with the same seed (the engine's rule).
  expect_identical(unname(out[1, "ROMEO:"]), unname(gpt2("ROMEO:", model = TINY, seed = 5, total_tokens = 15)))
})

test_that("total_tokens is max_new_tokens; NULL (and more than fit) is what fits after the prompt", {
  skip_without_engine()
  five <- py_model()$generate("ROMEO:", max_new_tokens = 5L, temperature = 0)
  expect_length(five$token_ids, 5L)
  expect_identical(unname(gpt2("ROMEO:", model = TINY, total_tokens = 5, temperature = 0)), five$text)

  # NULL: 256 - (prompt tokens) new tokens at most. The sample stops early only at <|endoftext|>.
  prompt <- "First Citizen:\nBefore we proceed any further, hear me speak."
  room <- 256L - length(py_model()$tokenizer$encode(prompt))
  full <- py_model()$generate(prompt, max_new_tokens = room, temperature = 1, seed = 11L)
  expect_true(length(full$token_ids) == room || full$finish_reason == "eos")
  expect_identical(unname(gpt2(prompt, model = TINY, seed = 11)), full$text)
  expect_identical(unname(gpt2(prompt, model = TINY, seed = 11, total_tokens = 10000)), full$text)
})

test_that("names are the prompts, or the prompts' own names", {
  skip_without_engine()
  out <- gpt2(c(romeo = "ROMEO:", king = "KING:"), model = TINY, total_tokens = 3, temperature = 0)
  expect_named(out, c("romeo", "king"))
  expect_identical(unname(out[["king"]]), unname(gpt2("KING:", model = TINY, total_tokens = 3, temperature = 0)))
})

test_that("an empty prompt is an unconditional sample, from <|endoftext|>", {
  skip_without_engine()
  out <- gpt2("", model = TINY, seed = 2, total_tokens = 20)
  expect_named(out, "")
  expected <- py_model()$generate("", max_new_tokens = 20L, temperature = 1, seed = 2L, bos = TRUE)$text
  expect_identical(unname(out), expected)
})

test_that("a model is loaded once per session, whichever way its directory is written", {
  skip_without_engine()
  gpt2("ROMEO:", model = TINY, total_tokens = 1, temperature = 0)
  before <- gpt2engine:::the$loads
  gpt2("ROMEO:", model = TINY, total_tokens = 1, temperature = 0)
  gpt2_score("ROMEO: hello", model = TINY)
  gpt2("ROMEO:", model = file.path(TINY, "."), total_tokens = 1, temperature = 0)
  expect_identical(gpt2engine:::the$loads, before)
})
