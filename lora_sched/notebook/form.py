"""`SchedulerForm`: an ipywidgets form that writes validated kohya TOML, with a live LR preview.

Every field comes from the schedule specs: the dropdown lists the catalogue
with one-line summaries, and only the chosen schedule's parameters are shown, each with its doc,
unit, range and default. Each change re-runs the translator (`translate.py`): the config is
validated from the exact TOML text the Save button would write, the error of invalid values is
shown inline as the same `ConfigError` text `lora-sched validate` prints, and the preview is
redrawn from the catalogue's closed form (m(s) x each group's base LR).

ipywidgets and matplotlib are imported when a form is built, never at module import time.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lora_sched.errors import ConfigError
from lora_sched.notebook import controls
from lora_sched.notebook import translate as tr
from lora_sched.schedules.spec import Param, ScheduleSpec, all_specs, get_spec
from lora_sched.torch.support import CUSTOM_CLASSES
from lora_sched.trainers import TRAINER_NAMES

if TYPE_CHECKING:
    from lora_sched.config import LoraConfig

_DESC = {"description_width": "170px"}
_TOGGLE = {"description_width": "170px", "button_width": "80px"}


def param_hint(param: Param, alias_defaults: Mapping[str, Any] | None = None) -> str:
    """The text shown beside a parameter field: doc; unit; allowed range; default."""
    default = param.default_text()
    if alias_defaults and param.name in alias_defaults:
        default = str(alias_defaults[param.name])
    return "; ".join([param.doc, *param.field.form_hints(), f"default {default}"])


class SchedulerForm:
    """The notebook form. Display it (last expression of a cell, or `display(form)`).

    For code and tests: `values` (form values, see translate.DEFAULTS), `set_values()`,
    `config` (LoraConfig, or None while invalid), `to_toml()`, `save(path)`, `load(path)`,
    `preview_data` (group -> LR per step, NumPy), `error_text` ("" when valid), and the widgets
    themselves (`scheduler`, `param_widgets`, `fields`, `save_button`, `load_button`, `path`).
    """

    def __init__(self, values: Mapping[str, Any] | None = None, path: str = "lora_sched.toml") -> None:
        from lora_sched.dependencies import import_optional

        w = import_optional("ipywidgets", "ipywidgets", "notebook")
        self._w = w
        self._suspended = True
        self._config: LoraConfig | None = None
        self._toml: str | None = None
        self.preview_data: dict[str, Any] = {}
        self.error_text = ""
        self.warning_text = ""
        self.resolved: Any = None
        self.bound_summary: Any = None
        self._extra: dict[str, Any] = {}
        self._param_cache: dict[str, dict[str, Any]] = {}
        self._drawn: tuple | None = None  # what the plot shows now (see _preview_key)

        specs = all_specs()
        self.scheduler = w.Dropdown(
            options=[(f"{s.name} — {s.summary}", s.name) for s in specs],
            value=tr.DEFAULTS["lr_scheduler"],
            description="lr_scheduler",
            style=_DESC,
            layout=w.Layout(width="760px"),
        )
        self.schedule_doc = w.HTML()
        self.param_box = w.VBox()
        self.param_widgets: dict[str, Any] = {}
        self.fields: dict[str, Any] = self._build_fields()
        self.length_info = w.HTML()
        self.plot = w.Output(layout=w.Layout(min_height="300px"))
        self.bound_html = w.HTML()
        self.error_html = w.HTML()
        self._build_file_controls(path)
        self.widget = self._layout()

        self.scheduler.observe(self._on_schedule_change, names="value")
        for field in self.fields.values():
            field.observe(self._refresh, names="value")
        self.path.observe(self._refresh, names="value")
        self._show_params(self.scheduler.value)
        self._suspended = False
        if values is not None:
            self.set_values(values)
        else:
            self._refresh()

    # ----------------------------------------------------------------------------------- build
    def _build_file_controls(self, path: str) -> None:
        """The file's path, the trainer to write for, Save and Load, and the status line."""
        w = self._w
        self.path = w.Text(value=path, description="TOML file", style=_DESC, layout=w.Layout(width="520px"))
        # the trainer the Save button writes for: sd-scripts' TOML (with lora_sched's own keys), or any
        # other trainer's file running the same curve (lora_sched.trainers)
        self.trainer = w.Dropdown(
            options=[(name, name) for name in TRAINER_NAMES],
            value="sd-scripts",
            description="write for",
            style=_DESC,
            layout=w.Layout(width="260px"),
        )
        self.save_button = w.Button(
            description="Save", tooltip="write the file for the chosen trainer", button_style="primary", icon="save"
        )
        self.load_button = w.Button(description="Load TOML", icon="folder-open")
        self.status = w.HTML()
        self.save_button.on_click(self._on_save)
        self.load_button.on_click(self._on_load)

    def _build_fields(self) -> dict[str, Any]:
        w, d = self._w, tr.DEFAULTS

        def text(key: str, placeholder: str = "") -> Any:
            return w.Text(value=str(d[key]), description=key, placeholder=placeholder, style=_DESC)

        def integer(key: str, label: str | None = None) -> Any:
            return w.IntText(value=d[key], description=label or key, style=_DESC)

        return {
            "warmup_mode": w.ToggleButtons(
                options=["steps", "percent"], value=d["warmup_mode"], description="warmup in", style=_TOGGLE
            ),
            "warmup_steps": integer("warmup_steps", "lr_warmup_steps"),
            "warmup_percent": w.FloatText(value=d["warmup_percent"], description="warmup %", style=_DESC),
            "length_mode": w.ToggleButtons(
                options=["steps", "epochs"], value=d["length_mode"], description="run length in", style=_TOGGLE
            ),
            "max_train_steps": integer("max_train_steps"),
            "max_train_epochs": integer("max_train_epochs"),
            "num_images": integer("num_images", "images"),
            "num_repeats": integer("num_repeats", "repeats"),
            "train_batch_size": integer("train_batch_size"),
            "gradient_accumulation_steps": integer("gradient_accumulation_steps"),
            "learning_rate": text("learning_rate"),
            "unet_lr": text("unet_lr", "= learning_rate"),
            "text_encoder_lr": text("text_encoder_lr", "= learning_rate (0 = UNet only)"),
            "pretrained_model_name_or_path": text("pretrained_model_name_or_path"),
            "train_data_dir": text("train_data_dir"),
            "output_dir": text("output_dir"),
            "output_name": text("output_name"),
            "resolution": text("resolution", '64 or "512,768"'),
            "network_dim": integer("network_dim"),
            "network_alpha": w.FloatText(value=d["network_alpha"], description="network_alpha", style=_DESC),
            "seed": integer("seed"),
            "mixed_precision": w.Dropdown(
                options=["no", "fp16", "bf16"], value=d["mixed_precision"], description="mixed_precision", style=_DESC
            ),
            "optimizer_type": text("optimizer_type"),
            "optimizer_args": text("optimizer_args", "relative_step=True scale_parameter=False"),
        }

    def _param_widget(self, param: Param, value: Any) -> Any:
        placeholder = "required" if param.required else param.default_text()
        return controls.build(param.control(), self._w, value, placeholder, description=param.name, style=_DESC)

    def _layout(self) -> Any:
        w, f = self._w, self.fields
        scheduler = w.VBox([self.scheduler, self.schedule_doc, self.param_box])
        warmup = w.HBox([f["warmup_mode"], f["warmup_steps"], f["warmup_percent"]])
        run = w.VBox(
            [
                w.HBox([f["length_mode"], f["max_train_steps"], f["max_train_epochs"]]),
                w.HBox([f["num_images"], f["num_repeats"]]),
                w.HBox([f["train_batch_size"], f["gradient_accumulation_steps"]]),
                self.length_info,
            ]
        )
        lrs = w.VBox([f["learning_rate"], f["unet_lr"], f["text_encoder_lr"]])
        training = w.Accordion(
            children=[
                w.VBox(
                    [
                        f[k]
                        for k in (
                            "pretrained_model_name_or_path",
                            "train_data_dir",
                            "output_dir",
                            "output_name",
                            "resolution",
                            "network_dim",
                            "network_alpha",
                            "seed",
                            "mixed_precision",
                            "optimizer_type",
                            "optimizer_args",
                        )
                    ]
                )
            ],
        )
        training.set_title(0, "Model, data and output")  # ipywidgets 7 (Colab's) and 8 both have set_title
        files = w.HBox([self.path, self.trainer, self.save_button, self.load_button])
        return w.VBox(
            [
                w.HTML("<b>Scheduler</b>"),
                scheduler,
                w.HTML("<b>Warmup</b>"),
                warmup,
                w.HTML("<b>Run length</b>"),
                run,
                w.HTML("<b>Learning rates</b>"),
                lrs,
                training,
                w.HTML("<b>Preview</b>"),
                w.HBox([self.plot, self.bound_html]),
                self.error_html,
                files,
                self.status,
            ]
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------------------ schedules
    def _show_params(self, name: str, args: Mapping[str, Any] | None = None) -> None:
        """Show the fields of schedule `name` (built once per schedule, edits kept when switching)."""
        spec = get_spec(name)
        if name not in self._param_cache:
            defaults = tr.param_defaults(spec)
            widgets = {p.name: self._param_widget(p, defaults[p.name]) for p in spec.params}
            for widget in widgets.values():
                widget.observe(self._refresh, names="value")
            self._param_cache[name] = widgets
        self.param_widgets = self._param_cache[name]
        if args:
            for key, value in args.items():
                if key in self.param_widgets:
                    self.param_widgets[key].value = value
        w = self._w
        rows = [
            w.HBox([self.param_widgets[p.name], w.HTML(f"<small>{html.escape(param_hint(p))}</small>")])
            for p in spec.params
        ]
        self.param_box.children = rows or [w.HTML("<i>no parameters</i>")]
        self.schedule_doc.value = _schedule_doc(spec)

    def _on_schedule_change(self, change: Mapping[str, Any]) -> None:
        if not self._suspended:  # a schedule chosen by hand replaces a loaded custom torch class
            for key in ("lr_scheduler_type", "lr_scheduler_args"):
                self._extra.pop(key, None)
        self._show_params(change["new"])
        self._refresh()

    # --------------------------------------------------------------------------------- values
    @property
    def values(self) -> dict[str, Any]:
        """The current form values (translate.DEFAULTS keys)."""
        values = {key: widget.value for key, widget in self.fields.items()}
        values["lr_scheduler"] = self.scheduler.value
        values["args"] = {key: widget.value for key, widget in self.param_widgets.items()}
        values["extra"] = dict(self._extra)
        return values

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Fill the form from form values (missing keys keep their current value); one redraw."""
        self._suspended = True
        try:
            if "lr_scheduler" in values:
                self.scheduler.value = get_spec(values["lr_scheduler"]).name
            self._show_params(self.scheduler.value, values.get("args"))
            for key, value in values.items():
                if key in self.fields:
                    self.fields[key].value = value
            if "extra" in values:
                self._extra = dict(values["extra"] or {})
        finally:
            self._suspended = False
        self._refresh()

    @property
    def config(self) -> LoraConfig | None:
        """The validated config of the current values, or None while they are invalid."""
        return self._config

    def to_toml(self) -> str:
        """The TOML text the Save button writes; raises ConfigError while the values are invalid."""
        _, text = tr.translate(self.values, source=self._source())
        return text

    def save(self, path: str | Path | None = None, trainer: str | None = None) -> LoraConfig:
        """Validate, then write the file atomically; ConfigError writes nothing.

        trainer: the trainer to write for (default: the form's "write for" choice): sd-scripts gets
        the TOML with lora_sched's own keys; any other trainer a file of its own that runs the same
        curve, or a ConfigError saying what it cannot express."""
        from lora_sched.config.writer import atomic_write_text

        target = Path(path) if path is not None else Path(self.path.value)
        trainer = trainer or self.trainer.value
        cfg, text = tr.translate(self.values, source=str(target))
        if trainer == "sd-scripts":
            atomic_write_text(str(target), text)  # the text the config was validated from
            return cfg
        from lora_sched.trainers import write_run
        from lora_sched.trainers.base import RunFacts
        from lora_sched.trainers.sd_scripts import run_of

        atomic_write_text(str(target), write_run(run_of(cfg, RunFacts()), trainer))
        return cfg

    def load(self, path: str | Path | None = None) -> LoraConfig:
        """Read a TOML file (validated) into the form."""
        from lora_sched.config import load_config

        target = Path(path) if path is not None else Path(self.path.value)
        cfg = load_config(target, custom_classes=CUSTOM_CLASSES)
        flat = {**cfg.values, **{key: value for key, (_, value) in cfg.extras.items()}}
        self.set_values(tr.flat_to_form(flat))
        return cfg

    # ------------------------------------------------------------------------------- refresh
    def _source(self) -> str:
        return self.path.value.strip() or "<form>"

    def _refresh(self, *_: Any) -> None:
        if self._suspended:
            return
        self._update_visibility()
        values = self.values
        try:
            cfg, text = tr.translate(values, source=self._source())
            steps, curves = tr.preview_sample(cfg)
        except ConfigError as exc:
            self._invalid(str(exc))
            return
        except Exception as exc:  # a bug elsewhere must not leave a stale "valid" preview behind
            self._invalid(f"internal error (please report): {type(exc).__name__}: {exc}")
            return
        self._config, self._toml, self.preview_data, self.error_text = cfg, text, curves, ""
        notes = [str(p) for p in cfg.warnings]
        from lora_sched.config.preview import adaptive_lr_note

        adaptive = adaptive_lr_note(cfg)
        if adaptive:
            notes.append(adaptive)
        if cfg.scheduler_type:
            notes.insert(
                0,
                f"lr_scheduler_type = {cfg.scheduler_type!r} (a custom torch class) drives this config: the preview "
                "shows only its warmup and run length; choose a schedule above to replace it",
            )
        self.warning_text = "\n".join(notes)
        self.error_html.value = _message_html(self.warning_text, "#8a6d00") if self.warning_text else ""
        resolved = self.resolved = cfg.resolve()  # the one resolution loading made, kept by the config
        self._update_length_info(resolved, cfg)
        self._draw(steps, curves, resolved)
        self._update_bound(resolved, cfg)

    def _invalid(self, message: str) -> None:
        self._config, self._toml, self.preview_data, self.error_text = None, None, {}, message
        self.resolved = self.bound_summary = self._drawn = None
        self.warning_text = ""
        self.error_html.value = _message_html(message, "#b00020")
        self.length_info.value = ""
        self.bound_html.value = ""
        self.plot.outputs = (
            {
                "output_type": "display_data",
                "data": {"text/plain": "no preview: the settings are invalid (see the message below)"},
                "metadata": {},
            },
        )

    def _update_visibility(self) -> None:
        f = self.fields
        warm_pct = f["warmup_mode"].value == "percent"
        epochs = f["length_mode"].value == "epochs"
        _show(f["warmup_steps"], not warm_pct)
        _show(f["warmup_percent"], warm_pct)
        _show(f["max_train_steps"], not epochs)
        for key in ("max_train_epochs", "num_images", "num_repeats"):
            _show(f[key], epochs)

    def _update_length_info(self, resolved: Any, cfg: LoraConfig) -> None:
        text = f"run: {resolved.run_length} steps; warmup {resolved.warmup} steps; horizon {resolved.horizon} steps"
        if cfg.values["max_train_epochs"] is not None:
            found = cfg.data()  # the data validate, preview and train count (the images field when not here)
            per_epoch = cfg.training_shape().steps_per_epoch
            text = f"{found.samples} samples per epoch ({found.source}) = {per_epoch} steps per epoch; " + text
        self.length_info.value = f"<small>{html.escape(text)}</small>"

    def _draw(self, steps: Any, curves: Mapping[str, Any], resolved: Any) -> None:
        shown = _preview_key(steps, curves, resolved)
        if shown == self._drawn:  # the same picture (the TOML path edited, a value typed back): keep it
            return
        self._drawn = shown
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from lora_sched.config.preview import envelope  # min/max envelope: drops stay visible

        fig = Figure(figsize=(7.0, 3.2), dpi=90)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for group, lr in curves.items():
            x, y = envelope(steps, lr)
            ax.plot(x, y, label=f"{group} (peak {lr.max():.3g}, last {lr[-1]:.3g})", linewidth=1.4)
        if resolved.warmup:
            ax.axvline(resolved.warmup, color="grey", linestyle=":", linewidth=1, label=f"warmup {resolved.warmup}")
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{resolved.name}: {resolved.run_length} steps", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self.plot.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                    "text/plain": f"LR preview of {resolved.name} over {resolved.run_length} steps",
                },
                "metadata": {},
            },
        )

    def _update_bound(self, resolved: Any, cfg: Any) -> None:
        bound_summary = _bound_summary()
        if bound_summary is None:
            self.bound_html.value = ""
            return
        from lora_sched.config.preview import DENSE_STEPS

        if resolved.run_length > DENSE_STEPS:  # the bound needs every step: several arrays of the run's length
            self.bound_summary = None
            self.bound_html.value = (
                f"<small>convex bound: not computed here for runs over {DENSE_STEPS:,} steps "
                "(use <code>lora-sched bound</code>)</small>"
            )
            return
        try:
            summary = bound_summary(resolved, cfg.group_lrs()["unet"], D=1, G=1)
        except ConfigError as exc:
            self.bound_html.value = _message_html(str(exc), "#8a6d00")
            return
        self.bound_summary = summary
        self.bound_html.value = f"<b>convex bound (D = G = 1)</b><pre>{html.escape(_bound_text(summary))}</pre>"

    # ------------------------------------------------------------------------------- buttons
    def _on_save(self, _button: Any = None) -> None:
        target = self.path.value
        try:
            self.save()
        except ConfigError as exc:
            self._invalid(str(exc))
            self.status.value = _message_html(f"not saved: {target} was not written", "#b00020")
            return
        except OSError as exc:  # a missing folder, no permission: say so in the form, not as a traceback
            self.status.value = _message_html(f"not saved: {target}: {exc.strerror or exc}", "#b00020")
            return
        self.status.value = _message_html(f"saved {target}", "#1b5e20")

    def _on_load(self, _button: Any = None) -> None:
        target = self.path.value
        try:
            self.load()
        except ConfigError as exc:
            self._invalid(str(exc))
            self.status.value = _message_html(f"not loaded: {target}", "#b00020")
            return
        except OSError as exc:
            self.status.value = _message_html(f"not loaded: {exc.strerror or exc}: {target}", "#b00020")
            return
        self.status.value = _message_html(f"loaded {target}", "#1b5e20")


def _bound_summary() -> Any:
    """The analysis helper's bound_summary(resolved, base_lr, D, G), or None where it is not installed."""
    for module in ("lora_sched.analysis.bound", "lora_sched.analysis.schedule", "lora_sched.analysis"):
        try:
            found = getattr(importlib.import_module(module), "bound_summary", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def _bound_text(summary: Any) -> str:
    if not isinstance(summary, Mapping):
        return str(summary)
    lines = []
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (tuple, list)):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        if value != "":
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def _preview_key(steps: Any, curves: Mapping[str, Any], resolved: Any) -> tuple:
    """Everything the preview plot is drawn from: equal keys draw the same picture."""
    lines = tuple((group, lr.tobytes()) for group, lr in curves.items())
    return resolved.name, resolved.run_length, resolved.warmup, steps.tobytes(), lines


def _show(widget: Any, visible: bool) -> None:
    widget.layout.display = "" if visible else "none"


def _message_html(text: str, color: str) -> str:
    return f'<pre style="color:{color}; white-space:pre-wrap; margin:4px 0">{html.escape(text)}</pre>'


def _schedule_doc(spec: ScheduleSpec) -> str:
    parts = [f"<b>{html.escape(spec.name)}</b>: {html.escape(spec.summary)}"]
    if not spec.accepts_warmup:
        parts.append(f"<br>no warmup: {html.escape(spec.warmup_note)}")
    for gotcha in spec.gotchas:
        parts.append(f"<br>&bull; {html.escape(gotcha)}")
    return f"<small>{''.join(parts)}</small>"
