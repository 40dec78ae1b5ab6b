"""Test doubles specced from the real TensorRT bindings, and a numpy-backed fake of CudaRuntime.

``Double(trt.IBuilderConfig)`` only has what the real class has: reading or writing an attribute the
class lacks raises AttributeError naming the TensorRT version; a property can be set only when the real
property is writable; a method call must fit one of the signatures pybind11 writes into the real
docstring (argument count, keyword names, and types: enums must be the real enum class, Dims real
``trt.Dims``, TensorRT objects doubles of the right class). Underneath sits
``unittest.mock.create_autospec(cls, instance=True, spec_set=True)``, which records the calls.

Every attribute touched is recorded in ``USED``: the list of TensorRT APIs the code uses.
"""

from __future__ import annotations

import ctypes
import inspect
import re
import types
from typing import Any, Callable
from unittest import mock

import numpy as np

from edge_app.runtime.cuda import CudaError, CudaRuntime, DeviceInfo

USED: set[str] = set()
_UNSET = object()


# ------------------------------------------------------------------------------------------------ signatures
def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def signatures(func: Any, name: str) -> list[list[tuple[str, str, bool]]]:
    """Overloads from a pybind11 docstring: [[(param, type, has_default), ...], ...] without ``self``."""
    out = []
    for line in (getattr(func, "__doc__", None) or "").splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->", line)
        if not m:
            continue
        params = []
        for p in _split_top(m.group(1)):
            pname, _, rest = p.partition(":")
            ptype, _, default = rest.partition("=")
            params.append((pname.strip(), ptype.strip(), bool(default.strip())))
        if params and params[0][0] == "self":
            params = params[1:]
        out.append(params)
    return out


def _type_ok(trt: Any, tname: str, value: Any) -> bool:
    if value is None and tname.startswith(("str", "typing.Optional")):
        return True
    last = tname.split(".")[-1]
    if tname.startswith(("tensorrt_bindings.tensorrt.", "tensorrt.")):
        cls = getattr(trt, last, None)
        if cls is None:
            return False
        if isinstance(value, Double):
            return issubclass(value._cls, cls)
        return isinstance(value, cls)
    if last == "SupportsInt" or tname == "int":
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if tname == "bool":
        return isinstance(value, bool)
    if tname == "str":
        return isinstance(value, str)
    if last == "Buffer" or tname == "buffer":
        try:
            memoryview(value)
        except TypeError:
            return False
        return True
    if tname in ("tuple", "list"):
        return isinstance(value, (tuple, list))
    return True  # types we do not model are not checked


def check_call(trt: Any, cls: type, name: str, func: Any, args: tuple, kwargs: dict) -> None:
    """Raise TypeError unless ``args``/``kwargs`` fit one overload of the real ``cls.name``."""
    sigs = signatures(func, name)
    if not sigs:
        raise AssertionError(f"{cls.__name__}.{name} has no parsable signature in its docstring")
    for params in sigs:
        if len(args) > len(params):
            continue
        bound = dict(zip([p[0] for p in params], args))
        if any(k in bound or k not in [p[0] for p in params] for k in kwargs):
            continue
        bound.update(kwargs)
        if any(p[0] not in bound and not p[2] for p in params):
            continue
        if all(_type_ok(trt, t, bound[n]) for n, t, _ in params if n in bound):
            return
    got = ", ".join([type(a).__name__ for a in args] + [f"{k}={type(v).__name__}" for k, v in kwargs.items()])
    want = " | ".join("(" + ", ".join(f"{n}: {t}" for n, t, _ in p) + ")" for p in sigs)
    raise TypeError(f"{cls.__name__}.{name}({got}) fits no real signature in TensorRT {trt.__version__}: {want}")


# ------------------------------------------------------------------------------------------------ doubles
class Double:
    """An instance double for a real TensorRT class (see module docstring)."""

    def __init__(self, trt: Any, cls: type, **props: Any) -> None:
        object.__setattr__(self, "_trt", trt)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "mock", mock.create_autospec(cls, instance=True, spec_set=True))
        object.__setattr__(self, "_props", {})
        object.__setattr__(self, "_returns", {})
        object.__setattr__(self, "calls", [])
        for k, v in props.items():
            setattr(self, k, v)

    def _static(self, name: str) -> Any:
        try:
            return inspect.getattr_static(self._cls, name)
        except AttributeError:
            raise AttributeError(
                f"TensorRT {self._trt.__version__}: {self._cls.__name__} has no attribute '{name}'"
            ) from None

    def returns(self, name: str, value: Any) -> Double:
        """Configure method ``name`` to return ``value`` (a callable is called with the arguments)."""
        if isinstance(self._static(name), property):
            raise AssertionError(f"{self._cls.__name__}.{name} is a property, not a method")
        self._returns[name] = value
        return self

    def __getattr__(self, name: str) -> Any:
        static = self._static(name)
        USED.add(f"{self._cls.__name__}.{name}")
        if isinstance(static, property):
            if name not in self._props:
                raise AssertionError(f"test double {self._cls.__name__}.{name} was read but not configured")
            return self._props[name]
        func = getattr(self._cls, name)
        child = getattr(self.mock, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            check_call(self._trt, self._cls, name, func, args, kwargs)
            child(*args, **kwargs)
            self.calls.append((name, args, kwargs))
            r = self._returns.get(name, _UNSET)
            if r is _UNSET:
                raise AssertionError(
                    f"test double {self._cls.__name__}.{name}() was called but has no return configured"
                )
            return r(*args, **kwargs) if callable(r) else r

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        static = self._static(name)
        if not isinstance(static, property) or static.fset is None:
            raise AttributeError(
                f"TensorRT {self._trt.__version__}: {self._cls.__name__}.{name} is not a writable property"
            )
        USED.add(f"{self._cls.__name__}.{name}")
        setattr(self.mock, name, value)
        self._props[name] = value

    def __str__(self) -> str:
        if "__str__" not in self._cls.__dict__:
            raise AssertionError(f"{self._cls.__name__} has no __str__ in TensorRT {self._trt.__version__}")
        USED.add(f"{self._cls.__name__}.__str__")
        return str(self._props.get("__str__", f"<{self._cls.__name__}>"))

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        """(args, kwargs) of every call of method ``name``."""
        return [(a, k) for n, a, k in self.calls if n == name]


def set_str(d: Double, text: str) -> Double:
    """Give a double the text its real ``__str__`` would return."""
    d._props["__str__"] = text
    return d


class TrtModule(types.ModuleType):
    """The real ``tensorrt`` module, except for the classes whose constructors need the native library.

    ``factories`` maps those names (Builder, Runtime, OnnxParser) to functions returning doubles; the
    constructor arguments are checked against the real ``__init__`` signature first.
    """

    def __init__(self, real: types.ModuleType, factories: dict[str, Callable[..., Any]]) -> None:
        super().__init__("tensorrt")
        self._real = real
        self._factories = factories
        self.constructed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)
        if name in self._factories:
            USED.add(f"tensorrt.{name}")
            real_cls = getattr(self._real, name)

            def construct(*args: Any, **kwargs: Any) -> Any:
                check_call(self._real, real_cls, "__init__", real_cls.__init__, args, kwargs)
                self.constructed.append(name)
                return self._factories[name](*args, **kwargs)

            return construct
        try:
            value = getattr(self._real, name)
        except AttributeError:
            raise AttributeError(f"TensorRT {self._real.__version__} has no '{name}'") from None
        USED.add(f"tensorrt.{name}")  # recorded only when it exists, so deliberate misses stay out of the list
        return value


# ------------------------------------------------------------------------------------------------ cuda
class _Handle:
    """Like cuda-python's cudaStream_t: convertible with int() but not an int, so code must unwrap it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


class FakeCuda(CudaRuntime):
    """CudaRuntime on host memory: 'device' buffers are numpy arrays, copies are memmove, graphs replay closures.

    Work queued while capturing is recorded instead of run, as on a real stream, so CUDA-graph code paths
    behave as they would on a GPU. ``submit`` is how a fake kernel (the execute double) queues itself.
    """

    def __init__(self) -> None:  # no cudart: nothing here touches CUDA
        self.rt = None  # type: ignore[assignment]
        self.buffers: dict[int, np.ndarray] = {}
        self.capturing: list[Callable[[], None]] | None = None
        self.clock = 0.0
        self.log: list[str] = []
        self.live_objects = 0
        self.can_map = True  # False: cudaHostAlloc(mapped) fails, as on a GPU or driver without host mapping
        self.mapped: set[int] = set()

    def _alloc(self, nbytes: int) -> int:
        arr = np.zeros(nbytes, np.uint8)
        self.buffers[arr.ctypes.data] = arr
        return arr.ctypes.data

    def _free(self, ptr: int) -> None:
        if ptr not in self.buffers:
            raise AssertionError(f"free of unknown pointer {ptr:#x}")
        del self.buffers[ptr]
        self.mapped.discard(ptr)

    def submit(self, work: Callable[[], None], what: str, ms: float = 1.0) -> None:
        """Run ``work`` now (advancing the fake GPU clock by ``ms``), or record it when a capture is active."""
        if self.capturing is not None:
            self.capturing.append(work)
            self.log.append(f"captured {what}")
        else:
            work()
            self.clock += ms
            self.log.append(what)

    def device_count(self) -> int:
        return 1

    def device_info(self, index: int = 0) -> DeviceInfo:
        raise AssertionError("tests pass DeviceInfo explicitly")

    def driver_version(self) -> int:
        return 12040

    def runtime_version(self) -> int:
        return 12090

    def set_device(self, index: int) -> None:
        pass

    def malloc_host(self, nbytes: int) -> int:
        return self._alloc(nbytes)

    def free_host(self, ptr: int) -> None:
        self._free(ptr)

    def malloc(self, nbytes: int) -> int:
        return self._alloc(nbytes)

    def free(self, ptr: int) -> None:
        self._free(ptr)

    def host_alloc_mapped(self, nbytes: int) -> int:
        if not self.can_map:
            raise CudaError("cudaHostAlloc failed: cudaErrorNotSupported (operation not supported)")
        ptr = self._alloc(nbytes)
        self.mapped.add(ptr)
        return ptr

    def host_device_pointer(self, host_ptr: int) -> int:
        if host_ptr not in self.mapped:
            raise AssertionError(f"device pointer asked for unmapped memory {host_ptr:#x}")
        return host_ptr  # unified memory: the device sees the host buffer at the same address

    def memcpy_h2d_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.submit(lambda: ctypes.memmove(dst, src, nbytes), f"h2d {nbytes}")

    def memcpy_d2h_async(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.submit(lambda: ctypes.memmove(dst, src, nbytes), f"d2h {nbytes}")

    def stream_create(self) -> Any:
        self.live_objects += 1
        return _Handle(7)

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        pass

    def stream_destroy(self, stream: Any) -> None:
        self.live_objects -= 1

    def event_create(self) -> Any:
        self.live_objects += 1
        return [0.0]

    def event_record(self, event: Any, stream: Any) -> None:
        event[0] = self.clock

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return end[0] - start[0]

    def event_destroy(self, event: Any) -> None:
        self.live_objects -= 1

    def begin_capture(self, stream: Any) -> None:
        self.capturing = []

    def end_capture(self, stream: Any) -> Any:
        graph, self.capturing = self.capturing, None
        self.live_objects += 1
        return graph

    def end_capture_on_error(self, stream: Any) -> None:
        self.capturing = None  # whatever was recorded is dropped, as the real one destroys the partial graph
        self.log.append("capture discarded")

    def graph_instantiate(self, graph: Any) -> Any:
        self.live_objects += 1
        return tuple(graph)

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self.log.append("graph launch")
        for work in graph_exec:
            work()
        self.clock += 1.0

    def graph_destroy(self, graph: Any) -> None:
        self.live_objects -= 1

    def graph_exec_destroy(self, graph_exec: Any) -> None:
        self.live_objects -= 1
