"""From a space to Optuna: the search plan (groups and their operator choices), samplers, pruners, and the
define-by-run function that turns an Optuna trial into a Candidate. Used by every backend (Ray's OptunaSearch
calls the same function).

Parameter names: ``scale``; ``<group>.op``; ``<group>.<operator>.<parameter>`` (only for the chosen operator).
A parameter the space does not list keeps the operator's default.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

import operators

from ..candidate import Candidate, OperatorAssignment, build_base, conv_groups, eligible_operators
from ..space.schema import OperatorChoice, ParamDomain, Space


@dataclass(frozen=True)
class SearchPlan:
    """The searchable choices of a space, fixed for the whole study (from the unscaled base model)."""

    scales: tuple[float, ...]
    groups: dict[str, tuple[str, ...]]  # group -> operator names eligible there
    choices: dict[str, OperatorChoice]  # operator name -> its parameter domains

    @staticmethod
    def from_space(space: Space, data_input_shape: tuple[int, ...] | None = None) -> SearchPlan:
        _, module, _ = build_base(space, data_input_shape)
        groups = conv_groups(module, space)
        eligible = eligible_operators(space, groups)
        return SearchPlan(
            scales=tuple(space.scaling.factor),
            groups={g: tuple(names) for g, names in eligible.items()},
            choices={c.name: c for c in space.operators.choices},
        )

    def size_summary(self) -> str:
        return (
            f"{len(self.groups)} groups ({', '.join(f'{g}: {len(o)} ops' for g, o in self.groups.items())}), "
            f"{len(self.scales)} scale factors"
        )


def _suggest(trial: optuna.Trial, name: str, spec: operators.ParamSpec, domain: ParamDomain | None) -> Any:
    if domain is None:
        return spec.default
    if domain.kind == "fixed":
        return domain.fixed
    if domain.kind == "choices":
        return (
            domain.choices[0]
            if len(domain.choices) == 1
            else trial.suggest_categorical(name, list(domain.choices))
        )
    if spec.kind == "int":
        step = int(domain.step or 1)
        return trial.suggest_int(name, int(domain.low), int(domain.high), step=step, log=domain.log)
    return trial.suggest_float(name, float(domain.low), float(domain.high), step=domain.step, log=domain.log)


def suggest_candidate(trial: optuna.Trial, plan: SearchPlan) -> Candidate:
    """Ask ``trial`` for one candidate (define-by-run; conditional parameters only for the chosen operator)."""
    scale = plan.scales[0] if len(plan.scales) == 1 else trial.suggest_categorical("scale", list(plan.scales))
    chosen: dict[str, OperatorAssignment] = {}
    baseline = bool(trial.user_attrs.get("baseline"))  # the study's control: plain convs everywhere
    for group, names in plan.groups.items():
        if baseline:
            if len(names) > 1 and "conv" in names:
                trial.suggest_categorical(f"{group}.op", list(names))  # the enqueued "conv", for the sampler
            chosen[group] = OperatorAssignment("conv", {})
            continue
        name = names[0] if len(names) == 1 else trial.suggest_categorical(f"{group}.op", list(names))
        choice = plan.choices[name]
        params = {
            spec.name: _suggest(trial, f"{group}.{name}.{spec.name}", spec, choice.params.get(spec.name))
            for spec in operators.get(name).params
        }
        chosen[group] = OperatorAssignment(name, params)
    return Candidate(float(scale), chosen)


def sampler_seed(seed: int, *stream: int) -> int:
    """The seed of one sampler of a study: ``seed`` itself for the first process of a new study, else a seed
    derived from (seed, *stream) (``stream``: trials already in the study, worker index), so parallel workers,
    a second process joining a running study and a resumed run each draw their own, reproducible, candidates.
    (Two processes started at the same instant on one study see the same trials and draw alike.)"""
    if not any(stream):
        return seed
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def make_sampler(space: Space, *stream: int) -> optuna.samplers.BaseSampler:
    """The space's sampler, seeded with ``sampler_seed(search.seed, *stream)``."""
    search = dataclasses.replace(space.search, seed=sampler_seed(space.search.seed, *stream))
    # constraints reach every sampler through Trial.set_constraint (Optuna 5)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "nsga2":
        population = max(4, min(50, search.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=search.seed)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=search.seed, n_startup_trials=search.startup_trials)
    with warnings.catch_warnings():  # `group` (conditional operator parameters) is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=search.seed, n_startup_trials=search.startup_trials, multivariate=True, group=True
        )


def make_pruner(space: Space) -> optuna.pruners.BasePruner:
    if space.search.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=max(2, space.search.startup_trials // 2), n_warmup_steps=1
        )
    if space.search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=space.train.epochs)
    return optuna.pruners.NopPruner()
