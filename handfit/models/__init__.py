"""The networks: ResNet backbones (f_F), the CPM (f_H) and the dense heads f_M, f_R."""
