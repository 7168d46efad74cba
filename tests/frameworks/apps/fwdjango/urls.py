from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("items/", views.items),
    path("form/", views.form),
    path("who/", views.whoami),
]
