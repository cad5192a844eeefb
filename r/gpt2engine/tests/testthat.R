library(testthat)
library(gpt2engine)

test_check("gpt2engine")
