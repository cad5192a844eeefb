# What the tests run on: the tiny Shakespeare model (real GPT-2 vocabulary, a context of 256
# tokens) and the engine of this repository, in the Python that reticulate uses.
#
#   GPT2ENGINE_TEST_MODEL  the tiny model's directory (default: ../shared/models/shakespeare-gpt2-tiny
#                          beside the repository)
#   GPT2ENGINE_REPO        the repository whose engine/ is tested: put first on PYTHONPATH, so its
#                          engine, not an installed one, is imported (default: found upwards from
#                          the working directory, when the tests run from the source tree)
#   RETICULATE_PYTHON      the Python (with the engine's dependencies)
#
# tests/test_r_package.py sets all three. Without a model or an engine the tests skip, saying why;
# with CI=true they fail instead, as the Python tests do (tests/conftest.py).

find_repo <- function() {
  repo <- Sys.getenv("GPT2ENGINE_REPO")
  if (nzchar(repo)) {
    return(normalizePath(repo, mustWork = FALSE))
  }
  dir <- normalizePath(getwd())
  repeat {
    if (file.exists(file.path(dir, "engine", "__init__.py")) && dir.exists(file.path(dir, "r", "gpt2engine"))) {
      return(dir)
    }
    parent <- dirname(dir)
    if (parent == dir) {
      return("")
    }
    dir <- parent
  }
}

REPO <- find_repo()
TINY <- Sys.getenv("GPT2ENGINE_TEST_MODEL")
if (!nzchar(TINY) && nzchar(REPO)) {
  TINY <- file.path(dirname(REPO), "shared", "models", "shakespeare-gpt2-tiny")
}

# Before Python starts: the repository's engine first, and one thread (the machine is shared).
if (nzchar(REPO) && !reticulate::py_available(initialize = FALSE)) {
  Sys.setenv(PYTHONPATH = paste(c(REPO, Sys.getenv("PYTHONPATH")[nzchar(Sys.getenv("PYTHONPATH"))]),
                                collapse = .Platform$path.sep))
}
Sys.setenv(GPT2_ENGINE_THREADS = "1")

skip_without_engine <- function() {
  why <- if (!nzchar(TINY) || !file.exists(file.path(TINY, "config.json"))) {
    sprintf("the tiny model is absent (%s): set GPT2ENGINE_TEST_MODEL", if (nzchar(TINY)) TINY else "no path")
  } else if (!reticulate::py_module_available("engine")) {
    "the Python package gpt2-engine is not importable: set GPT2ENGINE_REPO or RETICULATE_PYTHON"
  }
  if (!is.null(why)) {
    if (identical(Sys.getenv("CI"), "true")) {
      stop(why, " (CI=true requires it)", call. = FALSE)
    }
    skip(why)
  }
}

# The Python engine itself, for the expected values: its own GPT2 object, loaded apart from the
# package's (through reticulate's import, not the package's bridge).
python <- new.env()
py_model <- function() {
  if (is.null(python$model)) {
    python$model <- reticulate::import("engine")$GPT2$from_pretrained(TINY)
  }
  python$model
}

# The message of the error a Python expression raises (`m` is the Python engine's model), as
# str(error) gives it: what the R error should say, without reticulate's decoration.
py_error_message <- function(code) {
  catcher <- reticulate::py_run_string(paste(
    "def message_of(m, code):",
    "    try:",
    "        eval(code, {'m': m})",
    "    except Exception as error:",
    "        return str(error)",
    "    return None",
    sep = "\n"), local = TRUE)
  catcher$message_of(py_model(), code)
}
