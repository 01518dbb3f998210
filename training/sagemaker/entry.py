"""The entry script of SageMaker training jobs, packed as `sieve_train.py` at the top of
`sourcedir.tar.gz` (training/sagemaker/package.py).

The PyTorch training container unpacks the archive into its code folder and runs
`python sieve_train.py --epochs 3 --model filter ...` there, with the job's
hyperparameters as options and the job described in SM_* variables; `training.train`
turns those into a run (training/sagemaker/environment.py says how).
"""

import sys

from training.train import cli

if __name__ == "__main__":
    sys.exit(cli())
