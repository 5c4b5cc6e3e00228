# Copyright: (c) 2026, kubesnap contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot backends, and the options each adds to every module.

A backend's `option_spec` (module_utils/backends) is documented here under the same names; a unit
test keeps the two equal. CSI needs no option of its own.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options: {}
notes:
  - Backends. A volume is snapshotted by the first backend that serves it. This version has one, V(csi),
    which serves every CSI PersistentVolume bound to a claim, with a C(VolumeSnapshot) in the claim's namespace
    (snapshot.storage.k8s.io/v1). Other volume types are reported as problems.
'''
