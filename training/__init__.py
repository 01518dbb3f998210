"""Sieve's ML package: data sets, models, preprocessing, training and the model store."""
