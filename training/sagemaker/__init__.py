"""Serving and training Sieve models on AWS SageMaker.

- `package`: a registered model version as a SageMaker `model.tar.gz`, with the inference
  handler (`inference.py`) and the project's own preprocessing and model code packed in;
  the training job's `sourcedir.tar.gz`, with its entry script (`entry.py`).
- `endpoints`: upload, create or update an endpoint (rolled back when an update fails),
  wait, invoke, delete.
- `release`: package, upload and deploy registered versions in one call (the `deploy`
  command, and automatic deployment on promotion).
- `jobs`: submit `python -m training.train` as a SageMaker training job and register the
  model it produced in the model store; `environment`: the run inside the job.

Command line: `python -m training.sagemaker --help`; see docs/deployment.md.
"""
