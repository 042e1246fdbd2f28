"""Models-from-code entry of the pyfunc generator: MLflow stores this file with the model
and runs it on load (no pickled objects). The class itself lives in the installed package.
"""

from mlflow.models import set_model

from synthgen.tracking.pyfunc import SynthgenGenerator

set_model(SynthgenGenerator())
