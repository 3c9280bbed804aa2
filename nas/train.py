"""A lean training loop: minibatches sliced from tensors on the device, SGD or AdamW, cosine schedule, label
smoothing, AMP and channels_last on CUDA, operators' extra losses added to the loss, per-epoch evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from operators import ConvOperator

from .space.schema import TrainSection


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class DeviceData:
    """A dataset as two tensors on the training device."""

    inputs: torch.Tensor
    targets: torch.Tensor
    augment: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = (
        None  # per-minibatch (crop/flip, fresh noise)
    )

    def __len__(self) -> int:
        return self.inputs.shape[0]


def dataset_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of a dataset: its ``.tensors`` when it has them, else stacked once."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) == 2:
        return tensors[0], tensors[1]
    loader = DataLoader(dataset, batch_size=1024, shuffle=False)
    inputs, targets = zip(*loader)
    return torch.cat(inputs), torch.cat(targets)


def to_device(dataset: Dataset, device: torch.device) -> DeviceData:
    inputs, targets = dataset_tensors(dataset)
    augment = getattr(dataset, "augment", None)
    return DeviceData(inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True), augment)


@dataclass(frozen=True)
class TrainPlan:
    """What the loop needs besides the model and data (resolved from the space and the device)."""

    settings: TrainSection
    task: str  # classification | denoising
    device: torch.device
    amp: bool
    channels_last: bool
    seed: int


def _optimizer(model: nn.Module, settings: TrainSection) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            nesterov=settings.momentum > 0,
        )
    return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


def _schedule(optimizer: torch.optim.Optimizer, settings: TrainSection, steps_per_epoch: int) -> Any:
    total = settings.epochs * steps_per_epoch
    warmup = settings.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if settings.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _loss(output: torch.Tensor, target: torch.Tensor, task: str, label_smoothing: float) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(output.float(), target, label_smoothing=label_smoothing)
    return F.mse_loss(output.float(), target.float())


def _extra_loss(operators_: list[ConvOperator]) -> torch.Tensor | None:
    total = None
    for op in operators_:
        extra = op.extra_loss()
        if extra is not None:
            total = extra if total is None else total + extra
    return total


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, plan: TrainPlan) -> dict[str, float]:
    """Validation metrics: accuracy and loss (classification), psnr, ssim and loss (denoising), ``val_size``
    (the number of validation samples) and, for denoising, ``psnr_se`` and ``ssim_se`` (standard errors of the
    means over the validation images): what the report's uncertainties are computed from."""
    from .data.metrics import psnr, ssim

    model.eval()
    batch = plan.settings.eval_batch_size
    loss_sum, correct = 0.0, 0
    per_image: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": []}  # (n,) per batch, denoising only
    for start in range(0, len(data), batch):
        x, y = data.inputs[start : start + batch], data.targets[start : start + batch]
        if plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(plan.device.type, enabled=plan.amp, dtype=_amp_dtype(plan.device)):
            out = model(x)
        loss_sum += float(_loss(out, y, plan.task, 0.0)) * x.shape[0]
        if plan.task == "classification":
            correct += int((out.argmax(1) == y).sum())
        else:
            restored = out.float().clamp(0, 1)
            per_image["psnr"].append(psnr(restored, y.float()).double())
            per_image["ssim"].append(ssim(restored, y.float()).double())
    count = max(1, len(data))
    metrics = {"loss": loss_sum / count, "val_size": float(len(data))}
    if plan.task == "classification":
        metrics["accuracy"] = correct / count
    else:
        for name, values in per_image.items():
            mean, standard_error = _mean_and_standard_error(torch.cat(values))
            metrics[name], metrics[f"{name}_se"] = mean, standard_error
    return metrics


def _mean_and_standard_error(values: torch.Tensor) -> tuple[float, float]:
    """Mean of per-image values and its standard error, ``std / sqrt(n)`` (0 for fewer than two)."""
    if values.numel() < 2:
        return float(values.mean()) if values.numel() else 0.0, 0.0
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else torch.bfloat16


EpochCallback = Callable[[int, dict[str, float]], None]


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global generators that dropout and stochastic operators draw from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class TrainCheckpoint(Protocol):
    """Where a resumable training run keeps the state of its last finished epoch (the Ray backend's checkpoints).

    ``load()`` returns the state saved by an earlier, interrupted run (None: start from epoch 1); ``save`` is
    called after every epoch but the last, before ``on_epoch``."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, epoch: int, state: dict[str, Any]) -> None: ...


def train(
    model: nn.Module,
    train_data: DeviceData,
    val_data: DeviceData,
    plan: TrainPlan,
    on_epoch: EpochCallback | None = None,
    checkpoint: TrainCheckpoint | None = None,
) -> dict[str, float]:
    """Train ``model`` in place and return the last epoch's validation metrics (plus ``train_loss``, ``train_seconds``).

    ``on_epoch(epoch, metrics)`` is called after every epoch (1-based); it may raise to stop (pruning).
    With a ``checkpoint``, training resumes after the epoch it holds: model, optimizer, schedule, loss scaler and
    the shuffling generator are restored, so the run continues as if it had not been interrupted.
    """
    settings = plan.settings
    model.to(plan.device)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    ops = [m for m in model.modules() if isinstance(m, ConvOperator)]
    optimizer = _optimizer(model, settings)
    steps_per_epoch = max(1, math.ceil(len(train_data) / settings.batch_size))
    scheduler = _schedule(optimizer, settings, steps_per_epoch)
    scaler = torch.amp.GradScaler(enabled=plan.amp and _amp_dtype(plan.device) == torch.float16)
    generator = torch.Generator(device="cpu").manual_seed(plan.seed)
    metrics: dict[str, float] = {}
    first_epoch, seconds_before = 1, 0.0
    resumed = checkpoint.load() if checkpoint is not None else None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        generator.set_state(resumed["generator"])
        _set_rng_state(resumed["torch_rng"], plan.device)
        first_epoch, seconds_before = int(resumed["epoch"]) + 1, float(resumed["seconds"])
        metrics = dict(resumed["metrics"])
    started = time.perf_counter()
    for epoch in range(first_epoch, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train_data), generator=generator).to(plan.device)
        loss_sum = torch.zeros((), device=plan.device)
        for start in range(0, len(train_data), settings.batch_size):
            index = order[start : start + settings.batch_size]
            x, y = train_data.inputs[index], train_data.targets[index]
            if train_data.augment is not None:
                x, y = train_data.augment(x, y, generator)
            if plan.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(plan.device.type, enabled=plan.amp, dtype=_amp_dtype(plan.device)):
                loss = _loss(model(x), y, plan.task, settings.label_smoothing)
            extra = _extra_loss(ops)
            if extra is not None:
                loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach() * x.shape[0]
        train_loss = float(loss_sum) / len(train_data)  # one sync per epoch
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch}")
        metrics = {**evaluate(model, val_data, plan), "train_loss": train_loss}
        if checkpoint is not None and epoch < settings.epochs:
            checkpoint.save(
                epoch,
                {
                    "epoch": epoch,
                    "seconds": seconds_before + time.perf_counter() - started,
                    "metrics": metrics,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": _rng_state(plan.device),
                },
            )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    metrics["train_seconds"] = seconds_before + time.perf_counter() - started
    if resumed is not None:
        metrics["resumed_from_epoch"] = first_epoch - 1
    return metrics
