"""Serving and training Sieve models on AWS SageMaker.

- `package`: a registered model version as a SageMaker `model.tar.gz`, with the inference
  handler (`inference.py`) and the project's own preprocessing and model code packed in.
- `endpoints`: upload, create or update an endpoint (rolled back when an update fails),
  wait, invoke, delete.
- `jobs`: submit `python -m training.train` as a SageMaker training job and register the
  model it produced in the model store.

Command line: `python -m training.sagemaker --help`; see docs/deployment.md.
"""
