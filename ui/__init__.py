"""Trilemma3D's user interface: one module per tab, using only the public APIs of methods/ and eval/.

Public API::

    from ui import build_modality_tab, build_methods_tab      # tab builders (call inside gr.Tab)
    from ui import TITLES, API_NAMES                          # modality -> tab title / API name
    from ui import text_to_3d, image_to_3d, video_to_3d       # the API endpoints' functions
    from ui import HEADER, CSS, HEAD, theme                   # the look (HEAD: the page's one script)
    from ui import hosting                                    # server name/port, spaces.GPU wrapper
    from ui import served                                     # what may be served (SERVED), redact, public_record
    from ui import public                                     # shared-host limits: ceilings, fair queueing
    from ui.matrix import comparison_matrix, matrix_html      # the metrics x methods comparison matrix
    from ui.viewer_asset import viewer_file, camera_for       # a viewer-sized copy; the camera that frames it
    from ui.runs import build_runs_tab                        # browse and compare stored runs

Nothing here imports torch: methods are listed through the registry and run through eval.runs.runner.
"""

from ui import hosting
from ui.generate import API_NAMES, TITLES, ModalityTab, build_modality_tab, image_to_3d, text_to_3d, video_to_3d
from ui.methods_tab import build_methods_tab
from ui.style import CSS, HEAD, HEADER, theme

__all__ = [
    "API_NAMES",
    "CSS",
    "HEAD",
    "HEADER",
    "TITLES",
    "ModalityTab",
    "build_methods_tab",
    "build_modality_tab",
    "hosting",
    "image_to_3d",
    "text_to_3d",
    "theme",
    "video_to_3d",
]
