"""`TorchAdam`: Adam with PyTorch's exact update and coupled L2 weight decay — SCI's original optimizer.

The original trains with `torch.optim.Adam(lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=3e-4)`. Two
differences from `keras.optimizers.Adam` matter for parity:
- PyTorch adds eps to sqrt(v̂) = sqrt(v) / sqrt(1 − β2^t); Keras adds it to sqrt(v) (an "epsilon hat" that
  shrinks with t), which changes tiny-gradient steps;
- PyTorch's `weight_decay` is *coupled* L2: wd · θ is added to the gradient before the moments (not AdamW's
  decoupled decay, which is what Keras' `weight_decay` does).
Gradient clipping is not done here (the SCI trainer clips the all-reduced gradient itself).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="sci_tf")
class TorchAdam(keras.optimizers.Adam):
    """`torch.optim.Adam`: g ← g + wd·θ; moments m, v; θ ← θ − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε).

    Defaults are SCI's (lr 3e-4, β 0.9/0.999, ε 1e-8, coupled weight decay 3e-4). Other keyword arguments go
    to `keras.optimizers.Optimizer` (but not Keras' decoupled `weight_decay`, which would decay twice).
    """

    def __init__(
        self,
        learning_rate: float = 3e-4,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        coupled_weight_decay: float = 3e-4,
        amsgrad: bool = False,
        name: str = "torch_adam",
        **kwargs,
    ):
        if amsgrad:
            raise ValueError("TorchAdam does not implement amsgrad")
        if kwargs.get("weight_decay") is not None:
            raise ValueError("TorchAdam: use coupled_weight_decay (PyTorch L2), not Keras' decoupled weight_decay")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=False, name=name, **kwargs)
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.coupled_weight_decay:
            gradient = gradient + ops.cast(self.coupled_weight_decay, dtype) * variable
        # Bias corrections in float64, as PyTorch computes them (Python floats): in float32, 1 − 0.999^t loses
        # ~1e-5 relative precision to cancellation, which would show in every step.
        step = ops.cast(self.iterations + 1, "float64")
        beta_1, beta_2 = (ops.convert_to_tensor(beta, "float64") for beta in (self.beta_1, self.beta_2))
        bias_correction_1 = ops.cast(1.0 - ops.power(beta_1, step), dtype)
        bias_correction_2_sqrt = ops.cast(ops.sqrt(1.0 - ops.power(beta_2, step)), dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - self.beta_2))
        denominator = ops.sqrt(v) / bias_correction_2_sqrt + ops.cast(self.epsilon, dtype)
        self.assign_sub(variable, (lr / bias_correction_1) * m / denominator)

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}
