# The engine behind every function: which Python runs it, the bridge module (inst/python), the
# models loaded so far, and how the engine's errors become R errors.

# Package state: the bridge module once imported, and the models loaded in this session by key.
the <- new.env(parent = emptyenv())
the$models <- list()
the$loads <- 0L  # models loaded so far (the tests check that a second call loads nothing)

MODEL_SIZES <- c("124M", "355M", "774M", "1558M")

# Pick the Python before reticulate starts one, unless the user already did: a Python already
# running, or RETICULATE_PYTHON, wins; then the virtual environment install_gpt2engine() makes;
# then, on a reticulate with py_require() (1.41 and later), the requirement in the option
# gpt2engine.source or the environment variable GPT2ENGINE_SOURCE; else reticulate's own choice.
choose_python <- function() {
  if (reticulate::py_available(initialize = FALSE) || nzchar(Sys.getenv("RETICULATE_PYTHON"))) {
    return(invisible(NULL))
  }
  envname <- getOption("gpt2engine.virtualenv", "r-gpt2engine")
  if (reticulate::virtualenv_exists(envname)) {
    # required = FALSE: an earlier reticulate::use_virtualenv() / use_python() of the user's wins.
    reticulate::use_virtualenv(envname, required = FALSE)
    return(invisible(NULL))
  }
  source <- getOption("gpt2engine.source", Sys.getenv("GPT2ENGINE_SOURCE"))
  reticulate_ns <- asNamespace("reticulate")
  if (nzchar(source) && exists("py_require", envir = reticulate_ns, inherits = FALSE)) {
    # Looked up by name: reticulate 1.28 (Debian's) has no py_require, and R CMD check would
    # flag reticulate::py_require as missing there.
    get("py_require", envir = reticulate_ns)(source)
  }
  invisible(NULL)
}

# The Python module inst/python/gpt2engine_bridge.py, imported once per session.
bridge <- function() {
  if (is.null(the$bridge)) {
    choose_python()
    if (!reticulate::py_module_available("engine")) {
      stop(sprintf(paste(
        "the Python package gpt2-engine is not installed in the Python reticulate uses (%s):",
        "run install_gpt2engine(\"path/to/gpt2-engine\"), or set RETICULATE_PYTHON to a Python",
        "that has it (see ?install_gpt2engine)"), reticulate::py_config()$python), call. = FALSE)
    }
    path <- system.file("python", package = "gpt2engine", mustWork = TRUE)
    the$bridge <- reticulate::import_from_path("gpt2engine_bridge", path = path)
  }
  the$bridge
}

# Call a bridge function; an engine error (the bridge returns its one-line message) becomes an R
# error of class gpt2engine_error, with the engine's message and no Python traceback.
call_engine <- function(.function, ...) {
  answer <- bridge()[[.function]](...)
  if (!is.null(answer[["error"]])) {
    stop(engine_error(answer[["error"]], answer[["type"]]))
  }
  answer[["value"]]
}

engine_error <- function(message, type = "GPT2Error") {
  structure(
    class = c(paste0("gpt2engine_", type), "gpt2engine_error", "error", "condition"),
    list(message = message, call = NULL)
  )
}

# R-side argument errors: one line naming the argument, without the internal call.
fail <- function(...) stop(sprintf(...), call. = FALSE)

# What to load for `model`: its default (all four sizes) is the first, "124M", as match.arg
# makes it; a size is passed as it is (the engine maps "124M" to the published "gpt2", and so
# on); an existing directory by its full path (so a later setwd() does not change the key); a
# unique prefix of a size ("355") as match.arg would take it; anything else goes to the engine,
# which knows its published names ("gpt2", "gpt2-medium", ...) and says what it did not find.
model_name <- function(model) {
  if (identical(model, MODEL_SIZES)) {
    return(MODEL_SIZES[[1]])
  }
  if (!is.character(model) || length(model) != 1L || is.na(model) || !nzchar(model)) {
    fail("model must be one of \"124M\", \"355M\", \"774M\", \"1558M\", or the path of a local model directory")
  }
  if (model %in% MODEL_SIZES) {
    return(model)
  }
  if (dir.exists(model)) {
    return(normalizePath(model))
  }
  partial <- pmatch(model, MODEL_SIZES)
  if (!is.na(partial)) {
    return(MODEL_SIZES[[partial]])
  }
  model
}

# The model for `model`, loaded on first use and kept for the session.
load_model <- function(model) {
  key <- model_name(model)
  if (is.null(the$models[[key]])) {
    loaded <- call_engine("load", key)
    the$models[[key]] <- list(model = loaded, info = call_engine("info", loaded))
    the$loads <- the$loads + 1L
  }
  the$models[[key]]
}
