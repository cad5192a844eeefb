# gpt2_explain(): model.explain, its explorable page saved and opened, its saliency as a data frame.

gpt2_explain <- function(prompt, model = c("124M", "355M", "774M", "1558M"), total_tokens = 20,
                         file = tempfile("gpt2-explain-", fileext = ".html"), browse = interactive(), ...) {
  if (!is.character(prompt) || length(prompt) != 1L || is.na(prompt)) {
    fail("prompt must be one string, got %s", shown(prompt))
  }
  check_whole("total_tokens", total_tokens, 0)
  if (!is.character(file) || length(file) != 1L || is.na(file) || !nzchar(file)) {
    fail("file must be the path of the page to write, got %s", shown(file))
  }
  if (!is.logical(browse) || length(browse) != 1L || is.na(browse)) {
    fail("browse must be TRUE or FALSE, got %s", shown(browse))
  }
  options <- list(...)
  if (length(options) > 0L && (is.null(names(options)) || any(!nzchar(names(options))))) {
    fail("the options in ... must be named, as model.explain's (methods, steps, seed, temperature, ...)")
  }
  loaded <- load_model(model)
  e <- call_engine("explain", loaded$model, prompt, max_new_tokens = as.integer(total_tokens),
                   path = path.expand(file), options = options)
  saliency <- saliency_frame(e)
  attr(saliency, "file") <- e$path
  attr(saliency, "finish_reason") <- e$finish_reason
  if (browse) {
    utils::browseURL(e$path)
  }
  invisible(saliency)
}

# One row per (method, generated token, earlier token): the score of `token` (at `position`) for
# generating `target` (at `target_position`); positions count prompt and generated tokens from 1.
# The engine's matrix [G, N] holds zeros for the tokens at and after each target: left out here.
saliency_frame <- function(e) {
  tokens <- as.character(unlist(e$tokens))
  n_prompt <- e$prompt_length
  rows <- list()
  for (method in names(e$saliency)) {
    matrix_rows <- e$saliency[[method]]
    for (g in seq_along(matrix_rows)) {
      target <- n_prompt + g  # 1-based position of generated token g
      before <- seq_len(target - 1L)
      rows[[length(rows) + 1L]] <- data.frame(
        method = method,
        generated = g,
        target_position = target,
        target = tokens[[target]],
        position = before,
        token = tokens[before],
        score = as.numeric(unlist(matrix_rows[[g]]))[before],
        stringsAsFactors = FALSE
      )
    }
  }
  if (length(rows) == 0L) {
    return(data.frame(method = character(), generated = integer(), target_position = integer(),
                      target = character(), position = integer(), token = character(),
                      score = numeric(), stringsAsFactors = FALSE))
  }
  saliency <- do.call(rbind, rows)
  rownames(saliency) <- NULL
  saliency
}
