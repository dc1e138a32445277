"""Make the NUTS reference posteriors the NumPyro integration tests compare with.

Run from the repository root:  python tests/data/make_references.py
It writes tests/data/nuts_references.json: for each model and variable, the
posterior mean and sd with their Monte Carlo standard errors (ArviZ summary of a
long NumPyro NUTS run: 4 chains x 50,000 draws after 5,000 warmup, target
acceptance 0.9, seed 0).
"""

import json
import pathlib
import sys

import jax
from numpyro.infer import MCMC, NUTS

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from stochflow.diagnostics import arviz_bridge  # noqa: E402  (either ArviZ line)
from models_numpyro import (  # noqa: E402
    EIGHT_SCHOOLS_SIGMA,
    EIGHT_SCHOOLS_Y,
    eight_schools,
    logistic_data,
    logistic_regression,
)

COMMAND = "python tests/data/make_references.py"


def reference(model, *args, **kwargs):
    mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=5_000, num_samples=50_000,
                num_chains=4, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0), *args, **kwargs)
    summary = arviz_bridge.summary(arviz_bridge.from_numpyro(mcmc), kind="all", round_to="none")
    return {name: {col: float(summary.loc[name, col]) for col in ("mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk")}
            for name in summary.index}


def main():
    out = {
        "command": COMMAND,
        "method": "NumPyro NUTS, 4 chains x 50,000 draws, 5,000 warmup, target_accept_prob 0.9, seed 0",
        "eight_schools": reference(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y),
        "logistic_regression": reference(logistic_regression, *logistic_data()),
    }
    path = pathlib.Path(__file__).with_name("nuts_references.json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
