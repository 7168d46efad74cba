from django import forms
from django.http import JsonResponse
from django.shortcuts import render

from _who import who

from .models import Item


class ItemForm(forms.Form):
    name = forms.CharField(max_length=100)


def items(request):
    return JsonResponse({"count": Item.objects.count(),
                         "names": list(Item.objects.order_by("id").values_list("name", flat=True))})


def form(request):
    if request.method == "POST":
        f = ItemForm(request.POST)
        if f.is_valid():
            item = Item.objects.create(name=f.cleaned_data["name"])
            return JsonResponse({"created": item.id, "name": item.name, "count": Item.objects.count()})
        return JsonResponse({"errors": f.errors}, status=400)
    return render(request, "form.html", {"form": ItemForm()})


def whoami(request):
    return JsonResponse(who())
