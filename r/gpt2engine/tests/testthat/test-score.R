# gpt2_score(), gpt2_perplexity(), gpt2_tokenize() and gpt2_explain() against the Python engine.

test_that("gpt2_score() is a data frame of the Python engine's tokens and log-probabilities", {
  skip_without_engine()
  text <- "To be, or not to be: that is the question."
  scores <- gpt2_score(text, model = TINY, context = 4, stride = 2)
  expect_s3_class(scores, "data.frame")
  expect_named(scores, c("token", "token_id", "logprob", "window"))
  py <- py_model()$score(text, context = 4L, stride = 2L)
  expect_identical(scores$token_id, as.integer(py$token_ids$tolist()))
  expected <- as.numeric(py$logprobs$tolist())
  expected[is.nan(expected)] <- NA_real_
  expect_identical(scores$logprob, expected)
  expect_identical(scores$window, ifelse(py$window$tolist() < 0L, NA_integer_, as.integer(py$window$tolist()) + 1L))
  expect_identical(attr(scores, "perplexity"), py$perplexity)
  expect_identical(attr(scores, "count"), 12L)
  # README's worked example (gpt2 score ... --context 4 --stride 2).
  expect_identical(scores$token[1:4], c("To", " be", ",", " or"))
  expect_identical(scores$window[1:5], c(NA, 1L, 1L, 1L, 2L))
  expect_true(is.na(scores$logprob[1]))
  expect_equal(scores$logprob[2:4], c(-4.4793, -3.7469, -5.3631), tolerance = 1e-4)
  expect_equal(attr(scores, "perplexity"), 73.09, tolerance = 1e-3)
  # Defaults: the model's context, one window.
  whole <- gpt2_score(text, model = TINY)
  expect_identical(whole$logprob, {
    x <- as.numeric(py_model()$score(text)$logprobs$tolist())
    x[is.nan(x)] <- NA_real_
    x
  })
  with_bos <- gpt2_score(text, model = TINY, bos = TRUE)
  expect_identical(with_bos$token_id[1], 50256L)
  expect_false(is.na(with_bos$logprob[2]))
})

test_that("gpt2_perplexity() gives Python's perplexity, one per text", {
  skip_without_engine()
  texts <- c("To be, or not to be: that is the question.", "ROMEO:\nBut soft, what light through yonder window breaks?")
  out <- gpt2_perplexity(texts, model = TINY, context = 8, stride = 4)
  expect_length(out, 2L)
  for (i in 1:2) {
    expect_identical(out[[i]], py_model()$perplexity(texts[[i]], context = 8L, stride = 4L))
  }
  expect_identical(gpt2_perplexity(texts[[1]], model = TINY), py_model()$perplexity(texts[[1]]))
})

test_that("gpt2_tokenize() gives the ids, named by their text", {
  skip_without_engine()
  tokens <- gpt2_tokenize(c("Hello, world!", ""), model = TINY)
  expect_identical(tokens, list(c("Hello" = 15496L, "," = 11L, " world" = 995L, "!" = 0L), structure(integer(), names = character())))
})

test_that("gpt2_explain() writes the page, opens it, and returns Python's saliency", {
  skip_without_engine()
  file <- tempfile(fileext = ".html")
  opened <- NULL
  old <- options(browser = function(url) opened <<- url)
  on.exit(options(old))
  saliency <- gpt2_explain("ROMEO:", model = TINY, total_tokens = 3, file = file, browse = TRUE, steps = 4)
  expect_identical(opened, normalizePath(file))
  expect_identical(attr(saliency, "file"), normalizePath(file))
  expect_match(paste(readLines(file, n = 5, warn = FALSE), collapse = "\n"), "<html", ignore.case = TRUE)
  expect_named(saliency, c("method", "generated", "target_position", "target", "position", "token", "score"))

  py <- py_model()$explain("ROMEO:", max_new_tokens = 3L, steps = 4L, progress = FALSE)
  tokens <- unlist(py$tokens)
  expect_setequal(unique(saliency$method), names(py$saliency))
  P <- py$prompt_length
  for (method in names(py$saliency)) {
    matrix <- py$saliency[[method]]$tolist()
    for (g in 1:3) {
      rows <- saliency[saliency$method == method & saliency$generated == g, ]
      expect_identical(rows$position, seq_len(P + g - 1L))
      expect_identical(rows$token, tokens[seq_len(P + g - 1L)])
      expect_identical(unique(rows$target), tokens[[P + g]])
      expect_identical(rows$score, as.numeric(unlist(matrix[[g]]))[seq_len(P + g - 1L)])
      expect_equal(sum(rows$score), 1, tolerance = 1e-5)
    }
  }
  quiet <- gpt2_explain("ROMEO:", model = TINY, total_tokens = 1, browse = FALSE, methods = "gradient")
  expect_identical(unique(quiet$method), "gradient")
  expect_true(file.exists(attr(quiet, "file")))
})
