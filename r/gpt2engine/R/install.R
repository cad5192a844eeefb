# install_gpt2engine(): a virtual environment with the Python package gpt2-engine, which the
# package then finds by itself (see choose_python() in engine.R).

install_gpt2engine <- function(source = Sys.getenv("GPT2ENGINE_SOURCE"), envname = "r-gpt2engine",
                               python = NULL) {
  if (!is.character(source) || length(source) != 1L || is.na(source) || !nzchar(source)) {
    fail(paste("give source: what pip installs gpt2-engine from, such as the path of a checkout",
               "(install_gpt2engine(\"~/src/gpt2-engine\")), or set GPT2ENGINE_SOURCE"))
  }
  if (dir.exists(source)) {
    source <- normalizePath(source)
  }
  if (!reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_create(envname, python = python)
  }
  reticulate::py_install(source, envname = envname, method = "virtualenv")
  python_path <- reticulate::virtualenv_python(envname)
  if (reticulate::py_available(initialize = FALSE)) {
    message(sprintf("gpt2-engine is installed in %s; this R session already runs another Python, so restart R to use it",
                    python_path))
  } else {
    message(sprintf("gpt2-engine is installed in %s, which gpt2engine uses from now on", python_path))
  }
  invisible(python_path)
}
